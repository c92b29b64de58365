import os

import pytest

from srnn.atomic import atomic_path, write_text


def test_replaces_whole_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out.txt"
    write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            with open(tmp, "w") as f:
                f.write("half of the new")
            raise RuntimeError("crash in the middle")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.txt"]
    write_text(target, "new")
    assert target.read_text() == "new"


def test_outputs_get_the_umask_mode_not_private(tmp_path):
    old = os.umask(0o022)
    try:
        write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~old


def test_a_folder_turned_read_only_keeps_the_checkpoint_and_says_so(tmp_path, monkeypatch):
    """The next save after the output folder went read-only (a remount during training): one
    line naming the file and the reason, the checkpoint written before intact, no temporary."""
    import errno

    import keras

    from srnn import checkpoint
    from srnn.config import ModelConfig
    from srnn.errors import SrnnError
    from srnn.model import SampleRNN

    keras.utils.set_random_seed(0)
    m = SampleRNN(ModelConfig(slowdim=8, dim=8))
    path = tmp_path / "x_srnn_sz8_e0.h5"
    checkpoint.save(path, m)
    before = path.read_bytes()
    m.sample_tier.out.b.assign(m.sample_tier.out.b + 1.0)

    def read_only(*a, **k):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(os, "replace", read_only)
    with pytest.raises(SrnnError, match=r"cannot write .*x_srnn_sz8_e0.h5 \(Read-only file system\): write elsewhere"):
        checkpoint.save(path, m)
    monkeypatch.undo()
    assert path.read_bytes() == before and os.listdir(tmp_path) == [path.name]
    checkpoint.load(path)
