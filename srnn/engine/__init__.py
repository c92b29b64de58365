"""The engine: the few things Keras' backends do not share, one small module per backend.

The model (srnn.model, srnn.cells) and the sampler's loop body are written once in `keras.ops`;
what each backend does its own way lives in `srnn.engine.tensorflow` or `srnn.engine.jax`: the
scan with its tf.scan semantics, compilation, the generation loop and its per-frame random draw,
the training steps on one device or many. srnn.engine.contract lists what an engine module
provides (a typing.Protocol) and what each can do (`features()`, known before the framework
loads): the rest of the package asks the engine, it does not branch on the backend's name. The
backend is chosen the Keras way: `KERAS_BACKEND`, else the `backend` of keras.json, else
TensorFlow.
"""
import importlib
import json
import os

from ..errors import SrnnError

ENGINES = ("tensorflow", "jax")


def backend():
    """The Keras backend this process will use, read as Keras reads it, before Keras loads (so
    that TensorFlow can be imported quietly first)."""
    name = os.environ.get("KERAS_BACKEND")
    if not name:
        home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
        try:
            with open(os.path.join(home, "keras.json")) as f:
                name = json.load(f).get("backend")
        except (OSError, ValueError, AttributeError):
            name = None
    return name or "tensorflow"


def checked_backend():
    """backend(), or a one-line error when srnn has no engine for it."""
    name = backend()
    if name not in ENGINES:
        raise SrnnError(f"the Keras backend is {name} (KERAS_BACKEND or keras.json): srnn runs on "
                        f"{' or '.join(ENGINES)}; set KERAS_BACKEND=tensorflow or KERAS_BACKEND=jax")
    return name


def features():
    """What this process's engine can do (srnn.engine.contract.Features), without loading it."""
    from .contract import FEATURES

    return FEATURES[checked_backend()]


def module():
    """The engine module of this process's backend (imported once; it loads the framework)."""
    name = checked_backend()
    os.environ["KERAS_BACKEND"] = name  # Keras, imported next, agrees
    return importlib.import_module(f"{__name__}.{name}")
