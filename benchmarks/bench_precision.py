"""Training step of the tiny CPU configs in fp32 against bf16 autocast (``bf16-mixed``).

Usage::

    python benchmarks/bench_precision.py [--reps 10]

Times one optimizer step (forward, backward, AdamW) of the networks of
``configs/walt/tiny_cpu.yaml`` (the backbone on its batch of latents, with the no-grad
self-conditioning forward its training runs) and ``configs/tokenizer/tiny_cpu.yaml`` (the VAE on
its batch of 9-frame 32x32 clips plus its image batch), each in fp32 and under
``torch.autocast(dtype=torch.bfloat16)`` as Lightning's ``bf16-mixed`` runs it. The ratio is what
the configs' ``precision: bf16-mixed`` buys; it depends on the CPU's bf16 matmul support (see the
``ceilings`` part of ``benchmarks/run.py``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from harness import markdown_table, median, time_runs  # noqa: E402

WALT_CONFIG = ROOT / "configs" / "walt" / "tiny_cpu.yaml"
TOKENIZER_CONFIG = ROOT / "configs" / "tokenizer" / "tiny_cpu.yaml"


def walt_step(config: Path = WALT_CONFIG) -> tuple[Callable[[], None], str]:
    """A training step of ``config``'s backbone on random latents of its data shape."""
    from models import WindowedDiT
    from walt.core.hparams import max_latent_size

    cfg = yaml.safe_load(config.read_text())
    data = cfg["data"]["init_args"]
    batch, grid = data["batch_size"], tuple(max_latent_size(data["num_frames"], data["size"]))
    model = WindowedDiT(**cfg["model"]["init_args"]["backbone"]["init_args"], max_latent_size=grid)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)  # as the configs
    x = torch.randn(batch, model.in_channels, *grid)  # (B, c, t, h, w)
    steps = torch.randint(0, 1000, (batch,)).float()
    labels = torch.randint(0, model.num_classes, (batch,))

    def step() -> None:
        with torch.no_grad():  # the self-conditioning estimate (Chen et al. 2022)
            estimate = model(x, steps, class_labels=labels)
        out = model(x, steps, class_labels=labels, self_cond=estimate.float())
        opt.zero_grad(set_to_none=True)
        (out.float() - x).square().mean().backward()
        opt.step()

    return step, f"W.A.L.T backbone, batch {batch} of {grid} latents"


def tokenizer_step(config: Path = TOKENIZER_CONFIG, num_frames: int = 9) -> tuple[Callable[[], None], str]:
    """A reconstruction step of ``config``'s VAE on one video and one image batch."""
    from tokenizer import CausalVAE

    cfg = yaml.safe_load(config.read_text())
    data = cfg["data"]["init_args"]
    size, batch = data["size"], data["batch_size"]
    vae = CausalVAE.from_preset(cfg["model"]["init_args"]["preset"])
    opt = torch.optim.Adam(vae.parameters(), lr=1e-4, fused=True)  # as the configs
    clips = [torch.rand(batch, 3, frames, size, size) * 2 - 1 for frames in (num_frames, 1)]

    def step() -> None:
        loss = sum((vae(x)[0].float() - x).square().mean() for x in clips)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step, f"tokenizer VAE, {batch} clips {num_frames}x{size}x{size} + {batch} images"


def measure(reps: int, *, warmup: int = 2) -> list[dict]:
    """One row per network: fp32 and bf16-autocast step seconds (medians) and their ratio."""
    rows = []
    for build in (walt_step, tokenizer_step):
        torch.manual_seed(0)
        step, what = build()
        seconds = {}
        # interleaved, so a change in machine load falls on both precisions alike
        for dtype in (torch.float32, torch.bfloat16) * 2:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
                times = time_runs(step, warmup=warmup, reps=reps)
            seconds.setdefault(dtype, []).extend(times)
        fp32, bf16 = median(seconds[torch.float32]), median(seconds[torch.bfloat16])
        rows.append({"network": what, "fp32_s": fp32, "bf16_s": bf16, "ratio": bf16 / fp32})
    return rows


COLUMNS = [("network", "network", ""), ("fp32_s", "fp32 s/step", ".3f"),
           ("bf16_s", "bf16-mixed s/step", ".3f"), ("ratio", "bf16 ÷ fp32", ".2f")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=10, help="timed steps per precision and pass")
    args = parser.parse_args()
    print(markdown_table(measure(args.reps), COLUMNS))


if __name__ == "__main__":
    main()
