"""Writing a run's clips as they are made: per clip an mp4 (streamed through
``data.encode.open_mp4``), a gif, optionally its PNG frames, and one contact sheet for the run.

Frames arrive chunk by chunk (``push``); only a bounded number of thumbnails is kept for the gif
and the contact sheet, so memory does not grow with the length of the video. Every file is
written atomically (``common.atomic``).

A run's folder holds one run: :func:`prepare_output_folder` refuses a folder that holds an
earlier run's files (:data:`RUN_FILE`) unless told to remove them first, and the clips' list
(``clips.json``, :data:`MANIFEST`) lets a reader tell this run's clips from anything else.
"""

from __future__ import annotations

import json
import re
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from common.atomic import atomic_open, atomic_path, remove_stale_temporaries
from data.encode import open_mp4, to_uint8_frames
from walt.media import contact_sheet, write_gif

GIF_MAX_FRAMES = 48  # longer clips are subsampled evenly in the gif (and the contact sheet)
MANIFEST = "clips.json"  # the clip files of the run, written once they are all complete
# The clip files of a generation run, and every file it writes, by path relative to its folder.
CLIP_FILE = re.compile(r"sample_\d{3,}\.(mp4|gif)|sample_\d{3,}/frame_\d{5,}\.png")
RUN_FILE = re.compile(
    r"settings\.json|samples\.pt|contact_sheet\.png|cascade_sheet\.png|clips\.json"
    rf"|{CLIP_FILE.pattern}"
)


# The same names as fnmatch patterns of one folder level (for their stale temporaries).
RUN_NAMES = ("settings.json", "samples.pt", "contact_sheet.png", "cascade_sheet.png", MANIFEST,
             "sample_*.mp4", "sample_*.gif")


class EarlierRunError(FileExistsError):
    """The output folder holds the files of an earlier run."""


def run_files(out: str | Path) -> list[Path]:
    """The files of a generation run in ``out`` (:data:`RUN_FILE`), sorted; nothing else."""
    out = Path(out)
    if not out.is_dir():
        return []
    candidates = [*out.iterdir(), *out.glob("sample_*/frame_*.png")]
    return sorted(
        path for path in candidates
        if path.is_file() and RUN_FILE.fullmatch(path.relative_to(out).as_posix())
    )


def prepare_output_folder(out: str | Path, *, overwrite: bool = False) -> Path:
    """Make ``out`` ready for a new run: refuse it when it holds an earlier run's files, or with
    ``overwrite`` remove those files (only the files a run writes, :data:`RUN_FILE`; anything
    else in the folder stays). Temporaries a killed run left are removed either way.

    Args:
        out: the run's folder (a missing one is left to the writer to create: a run refused
            later, e.g. for its checkpoint, leaves nothing behind).
        overwrite: remove an earlier run's files instead of refusing.
    """
    out = Path(out)
    if not out.is_dir():
        return out
    remove_stale_temporaries(out, RUN_NAMES)
    for folder in out.glob("sample_*/"):
        remove_stale_temporaries(folder, "frame_*.png")
    earlier = run_files(out)
    if earlier and not overwrite:
        shown = ", ".join(p.relative_to(out).as_posix() for p in earlier[:4])
        more = f" and {len(earlier) - 4} more" if len(earlier) > 4 else ""
        raise EarlierRunError(
            f"{out} holds the files of an earlier run ({shown}{more}); a new run there would "
            "mix old clips with new ones: pass --overwrite to remove that run's files first, "
            "or choose another output folder"
        )
    for path in earlier:
        path.unlink()
    for folder in {p.parent for p in earlier if p.parent != out}:
        if not any(folder.iterdir()):
            folder.rmdir()
    return out


class ClipSink:
    """Streams ``B`` clips of ``total_frames`` frames into ``out``.

    Args:
        out: output folder (created).
        num_clips: B.
        total_frames: frames each clip will have (for the gif and sheet subsampling).
        size: (H, W) of the frames.
        fps: frame rate of the mp4s and gifs.
        png_frames: also write every frame as ``sample_XXX/frame_XXXXX.png``.
        captions: one caption per clip for the contact sheet.

    Raises:
        EarlierRunError: ``out`` holds an earlier run's files (see
            :func:`prepare_output_folder`, which can remove them first).
    """

    def __init__(
        self, out: str | Path, *, num_clips: int, total_frames: int, size: tuple[int, int],
        fps: float, png_frames: bool = False, captions: list[str] | None = None,
    ) -> None:
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        prepare_output_folder(self.out)
        self.num_clips, self.total, self.fps = num_clips, total_frames, fps
        self.png_frames, self.captions = png_frames, captions
        self.written = [0] * num_clips
        self._gif_keep = set(np.linspace(0, total_frames - 1, min(GIF_MAX_FRAMES, total_frames))
                             .round().astype(int).tolist())
        self._kept: list[list[Tensor]] = [[] for _ in range(num_clips)]
        self._stack = ExitStack()
        self._writers = [
            self._stack.enter_context(open_mp4(self.mp4_path(i), height=size[0], width=size[1],
                                               fps=fps))
            for i in range(num_clips)
        ]

    def mp4_path(self, i: int) -> Path:
        return self.out / f"sample_{i:03d}.mp4"

    def push(self, pixels: Tensor, *, first: int = 0) -> None:
        """Append frames ``(B', C, T', H, W)`` in [-1, 1] to clips ``first .. first + B' - 1``."""
        if first + pixels.shape[0] > self.num_clips:
            raise ValueError(f"clips {first}..{first + pixels.shape[0] - 1} exceed {self.num_clips}")
        pixels = pixels.detach().float().cpu()
        for i, clip in enumerate(pixels, start=first):
            done = self.written[i]
            if done + clip.shape[1] > self.total:
                raise ValueError(f"clip {i}: more than the announced {self.total} frames")
            frames = to_uint8_frames(clip)  # (T', H, W, 3)
            self._writers[i](frames)
            keep = [j for j in range(clip.shape[1]) if done + j in self._gif_keep]
            # uint8 thumbnails (C, T', H, W): a quarter of the float frames' memory
            self._kept[i].append(((clip[:, keep].clamp(-1, 1) + 1) * 127.5).round().byte())
            if self.png_frames:
                for j, frame in enumerate(frames):
                    path = self.out / f"sample_{i:03d}" / f"frame_{done + j:05d}.png"
                    path.parent.mkdir(exist_ok=True)
                    with atomic_path(path) as tmp:
                        Image.fromarray(frame).save(tmp, format="PNG")
            self.written[i] += clip.shape[1]

    def close(self) -> list[Path]:
        """Finish the mp4s, then write the gifs and the contact sheet; returns the mp4 paths."""
        if any(n != self.total for n in self.written):
            raise RuntimeError(f"clips hold {self.written} frames, {self.total} were announced")
        self._stack.close()
        thumbs = torch.stack([torch.cat(kept, dim=1) for kept in self._kept])  # (B, C, T*, H, W)
        for i, clip in enumerate(thumbs):
            write_gif(_to_pixels(clip), self.out / f"sample_{i:03d}.gif", fps=self.fps, scale=2)
        contact_sheet(_to_pixels(thumbs), self.out / "contact_sheet.png", labels=self.captions)
        mp4s = [self.mp4_path(i) for i in range(self.num_clips)]
        clips = [p.name for p in mp4s] + [p.with_suffix(".gif").name for p in mp4s]
        if self.png_frames:
            clips += [f"sample_{i:03d}/frame_{j:05d}.png" for i in range(self.num_clips)
                      for j in range(self.total)]
        with atomic_open(self.out / MANIFEST, "w") as f:
            json.dump({"files": sorted(clips)}, f, indent=1)
        return mp4s

    def __enter__(self) -> ClipSink:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self._stack.__exit__(exc_type, exc, tb)  # drop the half-written mp4s


def _to_pixels(frames: Tensor) -> Tensor:
    """uint8 thumbnails back to floats in [-1, 1], exactly as ``to_uint8_frames`` reads them."""
    return frames.float() / 127.5 - 1.0
