"""One run at a time per output: an advisory lock (flock) that the kernel releases when the process
ends, however it ends, so a crashed or killed run never leaves a stale lock behind."""
import contextlib
import fcntl
import os

from .errors import SrnnError


@contextlib.contextmanager
def exclusive(path, what, hint):
    """Hold the lock file `path` for the block; if another process holds it, a one-line error
    naming `what`, that process and `hint`. The lock file (a hidden file holding the PID) stays."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as e:
        raise SrnnError(f"cannot write {path} ({e.strerror}): {hint}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
            raise SrnnError(f"{what} is in use by process {holder}: wait for it to finish, or {hint}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
