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
