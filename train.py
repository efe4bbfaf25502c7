"""Lightning CLI entry point: ``python train.py {fit,validate,test,predict} --config CONFIG``.

Every stage of the project (the tokenizer and the W.A.L.T diffusion model) is an ordinary
LightningModule plus a LightningDataModule, configured from YAML through ``class_path`` /
``init_args``. Values that must agree are linked here, so a config states each only once:

- the data's clip length and size set the module's (``num_frames``, ``size``) and the backbone's
  ``max_latent_size`` (the latent grid its position tables are sized for,
  ``t = 1 + (T - 1) / 4``, ``h = H / 8``, ``w = W / 8``);
- the diffusion module's ``latent_channels`` sets its backbone's ``in_channels``.

Relative output paths (logger ``save_dir``, checkpoint ``dirpath``) are taken relative to
``trainer.default_root_dir`` (``common.run_paths``), so one override moves a whole run.

A link whose source or target the chosen classes lack is skipped, so one CLI serves both stages.
LightningCLI does not save the backbone's linked values in checkpoints; loading re-derives them
(``walt.core.hparams.with_linked_backbone_args``).
"""

from __future__ import annotations

import warnings
from pathlib import Path

from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from common.checkpoint_files import read_checkpoint
from common.run_paths import root_output_paths
from walt.core.hparams import checked_hparams, max_latent_size, plain_hparams, resume_hparams


class WaltCLI(LightningCLI):
    """LightningCLI with the project's argument links."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.init_args.num_frames", "model.init_args.num_frames")
        parser.link_arguments("data.init_args.size", "model.init_args.size")
        parser.link_arguments(
            ("data.init_args.num_frames", "data.init_args.size"),
            "model.init_args.backbone.init_args.max_latent_size",
            compute_fn=max_latent_size,
        )
        parser.link_arguments(
            "model.init_args.latent_channels", "model.init_args.backbone.init_args.in_channels"
        )
        # A label outside the model's classes is a bad sample, skipped by the data (not an
        # index error in the class embedding).
        parser.link_arguments(
            "model.init_args.backbone.init_args.num_classes", "data.init_args.num_classes"
        )

    def before_instantiate_classes(self) -> None:
        # Relative output paths of loggers and callbacks live under trainer.default_root_dir.
        root_output_paths(self.config[self.subcommand] if self.subcommand else self.config)


    def _parse_ckpt_path(self) -> None:
        """LightningCLI's merge of a ``--ckpt_path`` checkpoint's hyperparameters into the
        config, through the project's gate instead: the checkpoint (a file, or a sharded folder
        validated by ``common.checkpoint_files`` before Lightning's own reader sees it) is read
        weights-only, every class it names is checked by ``common.registry`` before jsonargparse
        could import it, and it restores the model, never paths: the optimizer, the LR scheduler
        and every file location (``walt.core.hparams.RUN_PATHS``) come from the config and
        command line. Values where checkpoint and config differ are named in a warning."""
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if not ckpt_path or not Path(ckpt_path).exists():
            return  # Lightning's own names ("last", "best", ...) and its missing-file error
        saved = read_checkpoint(ckpt_path, weights=False).get("hyper_parameters") or {}
        class_path = saved.get("_class_path")
        current = self.config[subcommand].get("model.init_args") or {}
        hparams, replaced, kept = resume_hparams(checked_hparams(saved), plain_hparams(current))
        if replaced or kept:
            warnings.warn(
                f"resuming from {ckpt_path}: the checkpoint's values replace the config's for "
                f"{replaced}; the config's paths are kept for {kept}", stacklevel=2)
        if not hparams:
            return
        if class_path is not None:
            hparams = {"class_path": class_path, "dict_kwargs": hparams}
        self.config = self.parser.parse_object({subcommand: {"model": hparams}}, self.config)


def main(args: list[str] | None = None) -> WaltCLI:
    """Run the CLI on ``args`` (default: the command line)."""
    return WaltCLI(
        args=args,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
    )


if __name__ == "__main__":
    main()
