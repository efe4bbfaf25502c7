"""What a killed or repeated run leaves, and what the folder tools make of it: temporary files
of interrupted writes (old and new naming), file modes, stale generation outputs and stale
shards, an undecodable file in each folder tool, and the pixel cap outside the loader. All
media are tiny and written here."""

from __future__ import annotations

import json
import os
import stat
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from common.atomic import atomic_open, atomic_path
from data.encode import write_mp4
from data.make_shards import media_files, write_shards
from data.pipeline import BadSampleWarning, FailureGuard, TooManyFailuresError
from data.shards import ShardSink

OLD_TEMPORARY = ".{}.k3x_9q2a{}"  # how earlier versions named them (mkstemp, same suffix)
NEW_TEMPORARY = ".{}.tmp-0123abcd"


def _frames(level: int, count: int = 5, size: int = 16) -> np.ndarray:
    return np.full((count, size, size, 3), level, dtype=np.uint8)  # (T, H, W, 3)


def _leftovers(folder: Path, name: str) -> list[Path]:
    """Temporaries of ``name`` as a killed writer leaves them: half-written, both namings."""
    suffix = Path(name).suffix
    paths = [folder / OLD_TEMPORARY.format(name, suffix), folder / NEW_TEMPORARY.format(name)]
    for path in paths:
        path.write_bytes(b"\x00\x00\x00 half-written")
    return paths


def _bad_messages(record: list) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, BadSampleWarning)]


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


# ---------------------------------------------------------------- temporaries of killed writers


def test_folder_readers_never_read_temporaries(tmp_path: Path) -> None:
    from tokenizer.clips import folder_clips
    from walt.evaluate.inputs import iter_media

    write_mp4(_frames(100), tmp_path / "sample_000.mp4")
    _leftovers(tmp_path, "sample_000.mp4")
    hidden = tmp_path / ".cache"
    hidden.mkdir()
    write_mp4(_frames(7), hidden / "copy.mp4")
    assert [p.name for p in media_files(tmp_path)] == ["sample_000.mp4"]
    assert [item.key for item in iter_media(tmp_path)] == ["sample_000"]
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        names = [name for name, _ in folder_clips(tmp_path, num_frames=5, size=8, images=False)]
    assert names == ["sample_000.mp4"] and not _bad_messages(record)
    summary = write_shards(tmp_path, str(tmp_path / "out" / "s-%06d.tar"), progress=False)
    assert summary["written"] == 1 and summary["failed"] == []


def test_a_new_temporary_is_hidden_and_has_no_media_extension(tmp_path: Path) -> None:
    with atomic_path(tmp_path / "sample_000.mp4") as tmp:
        assert tmp.name.startswith(".sample_000.mp4.tmp-") and tmp.suffix != ".mp4"
        assert media_files(tmp_path) == []  # a reader running now does not see it
        tmp.write_bytes(b"x")


def test_the_shard_writer_removes_its_stale_temporaries(tmp_path: Path) -> None:
    pattern = str(tmp_path / "s-%06d.tar")
    stale = _leftovers(tmp_path, "s-000000.tar")
    others = _leftovers(tmp_path, "notes.txt")  # another writer's: kept
    with ShardSink(pattern) as sink:
        sink.write({"__key__": "a", "txt": "x"})
    assert not any(p.exists() for p in stale) and all(p.exists() for p in others)
    assert sorted(p.name for p in tmp_path.glob("s-*")) == ["s-000000.tar"]


def test_a_generation_run_removes_its_stale_temporaries(tmp_path: Path) -> None:
    from walt.pipelines.outputs import prepare_output_folder

    stale = _leftovers(tmp_path, "sample_003.mp4") + _leftovers(tmp_path, "settings.json")
    others = _leftovers(tmp_path, "my_video.mp4")
    prepare_output_folder(tmp_path)
    assert not any(p.exists() for p in stale) and all(p.exists() for p in others)


# ---------------------------------------------------------------- modes


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o755])
def test_a_replaced_file_keeps_its_mode(tmp_path: Path, umask_022, mode: int) -> None:
    target = tmp_path / "model.ckpt"
    target.write_bytes(b"old")
    target.chmod(mode)
    with atomic_open(target, "wb") as f:
        f.write(b"new")
    assert target.read_bytes() == b"new" and stat.S_IMODE(target.stat().st_mode) == mode


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])  # 0o077 gives 0600 either way
def test_a_new_file_gets_the_umask_mode(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        with ShardSink(str(tmp_path / "s-%06d.tar")) as sink:
            sink.write({"__key__": "a", "txt": "x"})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "s-000000.tar").stat().st_mode) == 0o666 & ~umask


def test_latent_stats_in_place_keeps_the_checkpoint_mode(tmp_path: Path, umask_022) -> None:
    from tokenizer import CausalVAE, save_tokenizer
    from tokenizer.latent_stats import main

    folder = tmp_path / "media"
    folder.mkdir()
    write_mp4(np.random.default_rng(0).integers(0, 255, (9, 16, 16, 3), dtype=np.uint8),
              folder / "a.mp4")
    torch.manual_seed(0)
    ckpt = save_tokenizer(CausalVAE.from_preset("tiny").eval(), tmp_path / "t.safetensors")
    ckpt.chmod(0o644)
    main([str(ckpt), str(folder), "--num-frames", "9", "--size", "16"])
    assert stat.S_IMODE(ckpt.stat().st_mode) == 0o644


# ---------------------------------------------------------------- stale outputs


def _fake_run(folder: Path, clips: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "settings.json").write_text("{}")
    for i in range(clips):
        write_mp4(_frames(10 * i), folder / f"sample_{i:03d}.mp4")
        (folder / f"sample_{i:03d}").mkdir(exist_ok=True)
        (folder / f"sample_{i:03d}" / "frame_00000.png").write_bytes(b"png")


def test_generation_refuses_a_folder_with_an_earlier_run(tmp_path: Path) -> None:
    from walt.pipelines.outputs import ClipSink, EarlierRunError, prepare_output_folder

    _fake_run(tmp_path, clips=3)
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "sample_000" / "mine.txt").write_text("mine")
    with pytest.raises(EarlierRunError, match="earlier run.*sample_000.mp4.*--overwrite"):
        prepare_output_folder(tmp_path)
    with pytest.raises(EarlierRunError):
        ClipSink(tmp_path, num_clips=1, total_frames=1, size=(8, 8), fps=8.0)
    assert (tmp_path / "sample_002.mp4").exists()  # refusing removes nothing
    prepare_output_folder(tmp_path, overwrite=True)
    left = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    assert left == ["notes.txt", "sample_000", "sample_000/mine.txt"]  # only the run's files went


def test_the_generate_command_has_overwrite() -> None:
    from walt.generate import build_parser

    assert build_parser().parse_args(["--out", "x", "--overwrite"]).overwrite is True
    assert build_parser().parse_args(["--out", "x"]).overwrite is False


def test_evaluate_refuses_clips_that_their_run_did_not_write(tmp_path: Path) -> None:
    from walt.evaluate.inputs import StaleRunFileError, iter_media
    from walt.pipelines.outputs import ClipSink

    run = tmp_path / "run"
    run.mkdir()
    write_mp4(_frames(40), run / "sample_001.mp4")  # an earlier, larger run's clip
    (run / "sample_001.gif").write_bytes(b"GIF89a")
    with ClipSink(tmp_path / "new", num_clips=1, total_frames=2, size=(8, 8), fps=8.0) as sink:
        sink.push(torch.zeros(1, 3, 2, 8, 8))
        sink.close()
    (tmp_path / "new" / "sample_001.mp4").write_bytes((run / "sample_001.mp4").read_bytes())
    with pytest.raises(StaleRunFileError, match="sample_001.mp4"):
        list(iter_media(tmp_path / "new"))
    (tmp_path / "new" / "sample_001.mp4").unlink()
    assert [item.key for item in iter_media(tmp_path / "new")] == ["sample_000"]


def test_make_shards_removes_stale_shards_of_an_earlier_larger_run(tmp_path: Path, capsys) -> None:
    from data.make_shards import main
    from data.shards import StaleShardWarning

    source = tmp_path / "src"
    source.mkdir()
    for i in range(3):
        write_mp4(_frames(50 * i), source / f"v{i}.mp4")
    out = tmp_path / "out"
    pattern = str(out / "s-%06d.tar")
    assert write_shards(source, pattern, max_samples=1, progress=False)["shards"] == 3
    (out / "s-other.tar").write_bytes(b"mine")  # not a shard of the pattern: kept
    (source / "v1.mp4").unlink()
    (source / "v2.mp4").unlink()
    with pytest.warns(StaleShardWarning, match="removed 2 shard"):
        assert main([str(source), pattern, "--max-samples", "1"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["s-000000.tar", "s-other.tar"]
    printed = capsys.readouterr()
    assert "s-000001.tar" in printed.err and "removed 2 stale shard(s)" in printed.out


# ---------------------------------------------------------------- undecodable files


def _folder_with_a_broken_video(tmp_path: Path) -> Path:
    folder = tmp_path / "media"
    folder.mkdir()
    write_mp4(np.random.default_rng(0).integers(0, 255, (9, 16, 16, 3), dtype=np.uint8),
              folder / "good.mp4")
    (folder / "broken.mp4").write_bytes(np.random.default_rng(1).bytes(3000))
    return folder


def _tiny_tokenizer(tmp_path: Path) -> Path:
    from tokenizer import CausalVAE, save_tokenizer

    torch.manual_seed(0)
    return save_tokenizer(CausalVAE.from_preset("tiny").eval(), tmp_path / "t.safetensors")


def _run_tool(tool: str, folder: Path, tmp_path: Path) -> tuple[list[str], str]:
    """Run a folder tool on ``folder``; returns the bad-file warnings and the result's text."""
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        if tool == "walt.evaluate drift":
            from walt.evaluate.__main__ import main

            text = json.dumps(main(["drift", str(folder), "--chunk-frames", "4"])["videos"])
        elif tool == "tokenizer.evaluate":
            from tokenizer.evaluate import main

            main([str(_tiny_tokenizer(tmp_path)), str(folder), "--num-frames", "9", "--size",
                  "16", "--json", str(tmp_path / "r.json")])
            text = (tmp_path / "r.json").read_text()
        else:
            from tokenizer.latent_stats import main

            out = tmp_path / "stats.safetensors"
            main([str(_tiny_tokenizer(tmp_path)), str(folder), "--num-frames", "9", "--size",
                  "16", "--out", str(out)])
            text = "good.mp4" if out.is_file() else ""
    return _bad_messages(record), text


@pytest.mark.parametrize("tool", ["walt.evaluate drift", "tokenizer.evaluate",
                                  "tokenizer.latent_stats"])
def test_an_undecodable_video_is_skipped_and_named_by_each_folder_tool(
    tmp_path: Path, tool: str
) -> None:
    folder = _folder_with_a_broken_video(tmp_path)
    messages, text = _run_tool(tool, folder, tmp_path)
    assert "good" in text and "broken" not in text
    (message,) = messages
    assert str(folder / "broken.mp4") in message


def test_folder_tools_stop_past_the_failure_fraction() -> None:
    from data.pipeline import skip_unreadable

    guard = FailureGuard(max_failure_fraction=0.5, failure_check_after=4)

    def read(name: str) -> str:
        if name.startswith("bad"):
            raise ValueError("undecodable")
        return name

    names = ["good0", "bad0", "bad1", "good1", "bad2", "good2"]
    with pytest.warns(BadSampleWarning), pytest.raises(TooManyFailuresError, match="3 of 5"):
        list(skip_unreadable(names, read, name=str, what="test folder", guard=guard))
    fine = FailureGuard(max_failure_fraction=0.5, failure_check_after=4)
    with pytest.warns(BadSampleWarning, match="bad0"):
        kept = list(skip_unreadable(names[:2] + names[3:4], read, name=str, what="t", guard=fine))
    assert [name for name, _ in kept] == ["good0", "good1"]


# ---------------------------------------------------------------- the pixel cap


def test_walt_evaluate_applies_the_pixel_cap_and_names_the_file(tmp_path, monkeypatch) -> None:
    import walt.evaluate.inputs as inputs
    from data.decode import MediaTooLargeError

    path = tmp_path / "wide.mp4"
    write_mp4(_frames(90, count=3, size=32), path)  # 32 x 32 = 1024 pixels per frame
    (item,) = inputs.iter_media(tmp_path)
    assert inputs.read_frames(item).shape == (3, 32, 32, 3)
    monkeypatch.setattr(inputs, "DEFAULT_MAX_PIXELS", 1023)
    for read in (inputs.read_frames,
                 lambda it: inputs.read_clip(it, num_frames=2, random_start=False, rng=None)):
        with pytest.raises(MediaTooLargeError, match=f"{path}.*max_pixels=1023"):
            read(item)


def test_generation_inputs_apply_the_pixel_cap_and_name_the_file(tmp_path, monkeypatch) -> None:
    import walt.pipelines.inputs as inputs
    from data.decode import MediaTooLargeError

    path = tmp_path / "wide.mp4"
    write_mp4(_frames(90, count=3, size=32), path)
    monkeypatch.setattr(inputs, "DEFAULT_MAX_PIXELS", 1023)
    calls = [
        lambda: inputs.load_video(path, num_frames=2, size=(8, 8)),
        lambda: inputs.video_frames(path),
        lambda: next(inputs.iter_video(path, size=(8, 8), chunk=1, num_frames=2)),
    ]
    for call in calls:
        with pytest.raises(MediaTooLargeError, match=f"{path}.*max_pixels=1023"):
            call()
