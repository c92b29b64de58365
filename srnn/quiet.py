"""Import TensorFlow without its start-up chatter on the user's terminal.

TensorFlow 2.2x prints oneDNN/CUDA notices from C++ before its logging is initialised, so no
environment variable silences them. We point file descriptor 2 at a temporary file while TF loads
and looks for devices, and replay what it wrote only if that fails.
"""
import contextlib
import os
import sys
import tempfile


@contextlib.contextmanager
def stderr_to_file(fds=(2,)):
    """File descriptors `fds` (stderr; stdout too with (1, 2)) into a temporary file for the block;
    what went there is replayed on stderr only if the block fails."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(fd) for fd in fds]
    with tempfile.TemporaryFile() as tmp:
        for fd in fds:
            os.dup2(tmp.fileno(), fd)
        try:
            yield tmp
        except BaseException:
            for fd, old in zip(fds, saved):
                os.dup2(old, fd)
            tmp.seek(0)
            sys.stderr.write(tmp.read().decode(errors="replace"))
            raise
        finally:
            for fd, old in zip(fds, saved):
                os.dup2(old, fd)
                os.close(old)


_probed = False  # TensorFlow has looked for its devices, under stderr_to_file


def import_tensorflow():
    """Import and initialise TensorFlow quietly; returns the module. Its device probe (where the
    CUDA notice `failed call to cuInit` comes from on a machine without a GPU) runs captured even
    when something else imported TensorFlow first: Keras' seeding does on the JAX engine, before
    --tensorboard's writer needs TensorFlow's devices."""
    global _probed
    if _probed:
        return sys.modules["tensorflow"]
    with stderr_to_file():
        import tensorflow as tf

        tf.config.list_physical_devices()  # triggers the CUDA probe while stderr is still captured
    _probed = True
    return tf
