"""Atomic file writes: a crash at any moment leaves either the old file or the new one."""
import contextlib
import os
import tempfile

# mkstemp makes private (0600) files; a finished output should get the usual mode from the umask.
_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path in the same folder as `path`; rename it over `path` on success.

    The temporary name keeps the extension so that writers that look at it (soundfile,
    matplotlib) pick the right format. On any exception the temporary file is removed.
    """
    path = os.fspath(path)
    folder = os.path.dirname(path) or "."
    base, ext = os.path.splitext(os.path.basename(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=f".tmp{ext}", dir=folder)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path, text):
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)


def can_write(folder):
    """Really try to create a file (os.access says yes to root even where writing fails).
    Returns None when it works, else the reason."""
    try:
        with tempfile.TemporaryFile(dir=folder or "."):
            return None
    except OSError as e:
        return e.strerror or str(e)
