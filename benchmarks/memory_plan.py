"""Memory plan per GPU for a W.A.L.T training config under DDP and FSDP (docs/scaling.md).

    python benchmarks/memory_plan.py --config configs/walt/t2v_base.yaml --gpus 8 64 128

The parameter count is the model's own: the backbone of the config is built on the ``meta``
device (no memory, nothing downloaded). Everything else is arithmetic, stated in ``PLAN``:

- weights, gradients, AdamW's two moments and the EMA are fp32 (Lightning's ``bf16-mixed``
  keeps fp32 master weights and autocasts the matmuls): 4 + 4 + 8 + 4 = 20 bytes per parameter;
  DDP holds all of it on every GPU, FSDP (ZeRO-3, Rajbhandari et al. 2020) 1/N of it plus the
  gathered fp32 weights and gradients of the blocks in flight (two: the current one and the
  prefetched one);
- activations are mostly bf16: per token and per block ``c * D`` bytes with ``c = 34`` for a
  transformer block whose attention does not store its probabilities (Korthikanti et al. 2022,
  Sec. 4.1: ``s b h (34 + 5 a s / h)`` bytes with 16-bit activations; the ``5 a s / h`` term is
  dropped by SDPA/flash attention), plus 6 for AdaLN's modulated inputs and gates (W.A.L.T
  eq. 3: two modulated inputs, one gated output, 2 bytes each), plus 4 for QK-norm's normalized
  queries and keys; S blocks with text cross-attention add 8 (normed input, queries, output,
  the residual). With activation checkpointing (Chen et al. 2016) a block keeps only its input,
  the fp32 residual stream under autocast (``4 D`` bytes per token), and one block at a time
  holds its full activations during recomputation.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.registry import build  # noqa: E402
from walt.core.hparams import latent_size, with_linked_backbone_args  # noqa: E402

BYTES = {"weights": 4, "gradients": 4, "adam": 8, "ema": 4}  # per parameter, fp32
RESIDUAL_BYTES = 4  # the residual stream between blocks stays fp32 under autocast
C_BLOCK = 34 + 6 + 4  # bytes per token per block, in units of D (see the module docstring)
C_CROSS = 8  # extra for an S block with text cross-attention
GIB = 2**30


def backbone_spec(config: dict[str, Any]) -> dict[str, Any]:
    """The config's backbone spec with the values train.py links (in_channels, latent grid)."""
    model = config["model"]["init_args"]
    data = config["data"]["init_args"]
    hparams = {**model, "num_frames": data["num_frames"], "size": data["size"]}
    return with_linked_backbone_args(hparams)["backbone"]


def count_parameters(spec: dict[str, Any]) -> tuple[int, torch.nn.Module]:
    """Parameters of the backbone built on the meta device (nothing is allocated)."""
    with torch.device("meta"):
        net = build("backbone", spec)
    return sum(p.numel() for p in net.parameters()), net


def state_bytes(num_params: int, gpus: int, *, sharded: bool, block_params: int) -> dict[str, float]:
    """Bytes per GPU of each training state (weights, gradients, Adam, EMA) and their total."""
    share = num_params / gpus if sharded else num_params
    out = {name: share * b for name, b in BYTES.items()}
    # FSDP gathers whole blocks: the running one and the prefetched one, weights and gradients.
    out["gathered"] = 2 * block_params * (BYTES["weights"] + BYTES["gradients"]) if sharded else 0
    out["total"] = sum(out.values())
    return out


def activation_bytes(net: torch.nn.Module, tokens: int, *, checkpointing: bool) -> float:
    """Activation bytes of one sample of ``tokens`` tokens through every block (see PLAN)."""
    d = net.patch_embed.out_features
    per_block = [
        tokens * d * (C_BLOCK + (C_CROSS if b.cross is not None else 0))
        for b in net.blocks
    ]
    if not checkpointing:
        return float(sum(per_block))
    return float(len(per_block) * tokens * d * RESIDUAL_BYTES + max(per_block))


def plan(config_path: Path, gpus: list[int]) -> str:
    config = yaml.safe_load(config_path.read_text())
    spec = backbone_spec(config)
    num_params, net = count_parameters(spec)
    block_params = max(sum(p.numel() for p in b.parameters()) for b in net.blocks)
    data = config["data"]["init_args"]
    t, h, w = latent_size(data["num_frames"], data["size"], data["size"])
    p = net.patch_size
    video_tokens, image_tokens = t * (h // p) * (w // p), (h // p) * (w // p)
    lines = [
        f"config: {config_path}",
        f"backbone parameters: {num_params:,} ({num_params / 1e9:.2f} B); largest block "
        f"{block_params:,}; depth {len(net.blocks)}, D = {net.patch_embed.out_features}",
        f"tokens: video {video_tokens} (latent {t}x{h}x{w}, p={p}), image {image_tokens}",
        "",
        "| GPUs | strategy | weights | grads | Adam | EMA | gathered blocks | total (GiB) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for n in gpus:
        for name, sharded in (("DDP", False), ("FSDP", True)):
            s = state_bytes(num_params, n, sharded=sharded, block_params=block_params)
            cells = " | ".join(f"{s[k] / GIB:.2f}" for k in (*BYTES, "gathered", "total"))
            lines.append(f"| {n} | {name} | {cells} |")
    lines += ["", "| activations per sample (GiB) | no checkpointing | per-block checkpointing |",
              "| --- | --- | --- |"]
    for name, tokens in (("video", video_tokens), ("image", image_tokens)):
        full = activation_bytes(net, tokens, checkpointing=False) / GIB
        ckpt = activation_bytes(net, tokens, checkpointing=True) / GIB
        lines.append(f"| {name} ({tokens} tokens) | {full:.2f} | {ckpt:.2f} |")
    batch, image_batch = data.get("batch_size", 1), data.get("image_batch_size", 0)
    lines.append(
        f"\nper-GPU batch of the config: {batch} videos + {image_batch} images -> activations "
        f"{_batch_gib(net, batch, video_tokens, image_batch, image_tokens, False):.1f} GiB, "
        f"{_batch_gib(net, batch, video_tokens, image_batch, image_tokens, True):.1f} GiB "
        "with checkpointing"
    )
    return "\n".join(lines)


def _batch_gib(net, batch: int, vt: int, image_batch: int, it: int, ckpt: bool) -> float:
    return (
        batch * activation_bytes(net, vt, checkpointing=ckpt)
        + image_batch * activation_bytes(net, it, checkpointing=ckpt)
    ) / GIB


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, default=Path("configs/walt/t2v_base.yaml"))
    parser.add_argument("--gpus", type=int, nargs="+", default=[8, 64, 128])
    args = parser.parse_args(argv)
    if any(n < 1 for n in args.gpus):
        parser.error(f"--gpus must be positive, got {args.gpus}")
    print(plan(args.config, args.gpus))


if __name__ == "__main__":
    main()
