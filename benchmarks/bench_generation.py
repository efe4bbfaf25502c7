"""Generation benchmark: flat memory of long videos, and seconds per clip of the samplers.

    python benchmarks/bench_generation.py memory [--chunks 2 20] [--size 128] [--frames 17]
    python benchmarks/bench_generation.py speed [--size 32] [--frames 17] [--repeats 2]

Random-weight tiny models (``WindowedDiT`` preset ``tiny``, ``CausalVAE`` preset ``tiny``),
batch 1, CPU; nothing is downloaded.

``memory`` runs autoregressive extension (``walt.pipelines.extend``, streamed to the mp4 writer)
with each chunk count in a fresh subprocess and reports its peak RSS
(``resource.getrusage(RUSAGE_SELF).ru_maxrss``) and the peak above the RSS once the model is
built; the promise is ``peak(20 chunks) <= 1.2 peak(2 chunks)``. Sampling steps do not change
memory, so it runs 2 steps per chunk.

``speed`` times one clip for 50 DDIM steps and 20 DPM-Solver++ (``dpmpp_2m``) steps, with and
without self-conditioning and classifier-free guidance, all in one process, and prints the
ratios to the first row (the machine is shared: compare ratios of one run).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from harness import peak_rss_mib, rss_mib, time_runs  # noqa: E402


def tiny_module(root: Path, *, frames: int, size: int, self_cond: bool = True):
    """A random-weight tiny WALTModule for clips of ``frames`` x ``size`` x ``size``."""
    from models import WindowedDiT
    from tokenizer import CausalVAE, save_tokenizer
    from walt.core.hparams import max_latent_size
    from walt.diffusion import GaussianDiffusion
    from walt.lightning import WALTModule

    torch.manual_seed(0)
    tok = save_tokenizer(CausalVAE.from_preset("tiny"), root / "tok.safetensors")
    t, h, w = max_latent_size(frames, size)
    backbone = WindowedDiT.from_preset(
        "tiny", in_channels=8, num_classes=4, max_latent_size=(t, h, w),
        spatiotemporal_window=(t, min(h, 8), min(w, 8)), use_self_cond=self_cond,
    )
    return WALTModule(backbone=backbone, diffusion=GaussianDiffusion(), tokenizer=str(tok),
                      num_frames=frames, size=size, ema_decay=0.9).eval()


def memory_run(chunks: int, frames: int, size: int) -> dict:
    from walt.pipelines.extend import extend, extended_length
    from walt.pipelines.outputs import ClipSink

    with tempfile.TemporaryDirectory() as tmp:
        module = tiny_module(Path(tmp), frames=frames, size=size)
        base = rss_mib()
        total = extended_length(frames, chunks)
        stream = {"label": torch.tensor([1])}
        with ClipSink(Path(tmp) / "out", num_clips=1, total_frames=total, size=(size, size),
                      fps=8.0) as sink:
            extend(module, stream=stream, num_samples=1, num_chunks=chunks, num_frames=frames,
                   size=(size, size), start=None, emit=sink.push, generator=torch.Generator(),
                   sampling=module.sampling.override({"num_inference_steps": 2}))
            sink.close()
        peak = peak_rss_mib()
    return {"chunks": chunks, "frames": total, "peak_rss_mib": peak, "peak_above_model_mib":
            peak - base}


SAMPLERS = (("ddim", 50), ("dpmpp_2m", 20))


def speed(frames: int, size: int, repeats: int, *, self_conds=(False, True), guidances=(1.0, 4.0),
          samplers=SAMPLERS) -> list[dict]:
    """Seconds per clip (best of ``repeats``) of each (self-cond, guidance, sampler) setting."""
    from walt.core.generation import sampling_stream

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for self_cond in self_conds:
            module = tiny_module(Path(tmp), frames=frames, size=size, self_cond=self_cond)
            for guidance in guidances:
                for sampler, steps in samplers:
                    def clip(module=module, sampler=sampler, steps=steps, guidance=guidance) -> None:
                        sampling = module.sampling.override(dict(
                            sampler=sampler, num_inference_steps=steps, guidance_scale=guidance))
                        module.generate(stream=sampling_stream(labels=torch.tensor([1])),
                                        sampling=sampling,
                                        generator=torch.Generator().manual_seed(0))

                    times = time_runs(clip, warmup=0, reps=repeats)
                    rows.append({"sampler": sampler, "steps": steps, "self_cond": self_cond,
                                 "guidance_scale": guidance, "s_per_clip": min(times)})
    first = rows[0]["s_per_clip"]
    for row in rows:
        row["ratio"] = row["s_per_clip"] / first
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["memory", "speed", "_memory_child"])
    parser.add_argument("--chunks", type=int, nargs="+", default=[2, 20])
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--size", type=int)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    if args.what == "_memory_child":
        print(json.dumps(memory_run(args.chunks[0], args.frames, args.size)))
        return
    if args.what == "speed":
        for row in speed(args.frames, args.size or 32, args.repeats):
            print(json.dumps(row))
        return
    results = []
    for chunks in args.chunks:
        out = subprocess.run(
            [sys.executable, __file__, "_memory_child", "--chunks", str(chunks), "--frames",
             str(args.frames), "--size", str(args.size or 128)],
            check=True, capture_output=True, text=True,
        ).stdout.strip().splitlines()[-1]
        results.append(json.loads(out))
        print(out)
    print(f"peak ratio {results[-1]['peak_rss_mib'] / results[0]['peak_rss_mib']:.3f} "
          f"({results[-1]['chunks']} vs {results[0]['chunks']} chunks)")


if __name__ == "__main__":
    main()
