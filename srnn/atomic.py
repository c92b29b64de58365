"""Atomic file writes: a crash at any moment leaves either the old file or the new one."""
import contextlib
import errno
import glob
import os
import shutil
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
    prefix, suffix = _temporary_name(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=folder)
    except OSError as e:
        raise cannot_write(path, e) from None
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        # The writers (libsndfile, matplotlib, plain writes) report a full disk or a vanished folder
        # as OSError or as their own RuntimeError: either becomes one line naming the file.
        # (libsndfile says a failed write(2) as "System error.")
        if isinstance(e, OSError) or (isinstance(e, RuntimeError) and (_no_room(folder) or "System error" in str(e))):
            raise cannot_write(path, e) from None
        raise


def _temporary_name(path):
    """(prefix, suffix) of atomic_path's temporary files for `path`: hidden, the extension kept."""
    base, ext = os.path.splitext(os.path.basename(path))
    return f".{base}.", f".tmp{ext}"


def temporaries(pattern):
    """The temporary files a killed atomic_path left for the files matching the glob `pattern`."""
    prefix, suffix = _temporary_name(pattern)
    return glob.glob(os.path.join(os.path.dirname(pattern) or ".", f"{prefix}*{suffix}"))


def _no_room(folder):
    try:
        return shutil.disk_usage(folder).free < 1 << 20
    except OSError:
        return True  # the folder itself is gone or unreadable


def cannot_write(path, exc):
    from .errors import SrnnError, first_line

    reason = os.strerror(exc.errno) if getattr(exc, "errno", None) else first_line(exc)
    hint = "write elsewhere"  # a read-only disk, a missing folder, no permission, a folder in the way
    if may_be_full(exc):
        reason, hint = f"{reason}; the disk may be full", "free some space or write elsewhere"
    return SrnnError(f"cannot write {path} ({reason}): {hint}; files written before are untouched")


def may_be_full(exc):
    """Whether a failed write may have met a full disk: no space, past a size limit or a quota, or
    no errno at all (a short write: NumPy's "N requested and M written"; TensorFlow's own errors)."""
    return isinstance(exc, RuntimeError) or getattr(exc, "errno", None) in (None, errno.ENOSPC, errno.EFBIG,
                                                                           errno.EDQUOT)


def check_new_folder(path, flag):
    """`path` must not exist, or be an empty folder: an output folder that replaces nothing."""
    from .errors import SrnnError

    if os.path.exists(path) and (not os.path.isdir(path) or os.listdir(path)):
        raise SrnnError(f"{flag} {path} exists and is not an empty folder: choose a new folder")


def write_text(path, text):
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)


def require_writable(folder, what, hint):
    """A one-line error unless new files can be made in `folder`: `cannot write WHAT to FOLDER
    (reason): HINT`."""
    from .errors import SrnnError

    reason = can_write(folder)
    if reason:
        raise SrnnError(f"cannot write {what} to {os.path.abspath(folder or '.')} ({reason}): {hint}")


def can_write(folder):
    """Really try to create a file (os.access says yes to root even where writing fails).
    Returns None when it works, else the reason."""
    try:
        with tempfile.TemporaryFile(dir=folder or "."):
            return None
    except OSError as e:
        return e.strerror or str(e)


def check_outputs(paths):
    """Each output file can be made: no folder in its place, and its folder takes new files."""
    import errno

    for path in paths:
        if os.path.isdir(path):
            raise cannot_write(path, IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR)))
    for folder in {os.path.dirname(p) or "." for p in paths}:
        require_writable(folder, paths[0], "run from a writable folder")
