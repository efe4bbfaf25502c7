"""Lightning CLI entry point: ``python train.py {fit,validate,test,predict} --config CONFIG``.

Every stage of the project (the tokenizer and the W.A.L.T diffusion model) is an ordinary
LightningModule plus a LightningDataModule, configured from YAML through ``class_path`` /
``init_args``.
"""

from __future__ import annotations

from lightning.pytorch.cli import LightningCLI


def main() -> None:
    LightningCLI(
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
    )


if __name__ == "__main__":
    main()
