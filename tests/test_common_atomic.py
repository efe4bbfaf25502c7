import pytest

from common.atomic import atomic_open, atomic_path


@pytest.mark.parametrize("mode,data", [("wb", b"new"), ("w", "new")])
def test_atomic_open_replaces_on_success(tmp_path, mode, data):
    target = tmp_path / "f.bin"
    target.write_bytes(b"old")
    with atomic_open(target, mode) as f:
        f.write(data)
        assert target.read_bytes() == b"old"  # not visible until the rename
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]


def test_interrupted_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "f.ckpt"
    target.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise KeyboardInterrupt
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.ckpt"]


def test_temporary_is_hidden_beside_the_target_without_its_extension(tmp_path):
    target = tmp_path / "sub" / "x.safetensors"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.startswith(".x.safetensors.tmp-")
        assert not tmp.name.endswith(".safetensors")
        tmp.write_bytes(b"1")
    assert target.read_bytes() == b"1"


def test_read_mode_is_refused(tmp_path):
    with pytest.raises(ValueError, match="write mode"), atomic_open(tmp_path / "a", "rb"):
        pass
