"""srnn: SampleRNN (Mehri et al., ICLR 2017) on Keras 3 / TensorFlow 2, by default the original
three-tier model.

The package is laid out as the pipeline runs: audio in (`audio`), parts (`parts`),
quantisation (`quantize`), batches for truncated BPTT (`batches`), the architecture (`config`),
the RNN maths (`cells`), the tiers and the model (`model`), training (`training`) and watching it
(`watch`), sampling (`generation`, `sample`), the checkpoint file (`checkpoint`) and the
SavedModel (`export`); `api` is srnn from Python, which the command line (`cli`, `commands`) uses.

From Python (README "From Python"):

    import srnn
    model = srnn.load("models/demo_srnn_sz128.h5")
    audio = model.generate(seconds=2, n=2)     # float32 (2, 32000), as --sample writes it
    srnn.write_wav("first.wav", audio[0], model.sample_rate)
    model.score(audio[0]), srnn.train(exp="tiny", dim=32, slowdim=32, nepochs=1)

`import srnn` loads no deep-learning framework: the API's names come on first use, and the
framework with the first model that runs.
"""
import os

# The Keras backend is chosen the Keras way (KERAS_BACKEND, keras.json; TensorFlow by default):
# srnn.engine reads it. Keep TensorFlow's C++ start-up chatter off the user's screen.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # errors still reach Python as exceptions

__version__ = "0.1.0"

API = ("load", "train", "write_wav", "play", "Model", "SrnnError")
__all__ = list(API)


def __getattr__(name):
    """srnn.load, srnn.train, ...: srnn.api's, imported on first use (PEP 562)."""
    if name == "SrnnError":
        from .errors import SrnnError

        return SrnnError
    if name in API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'srnn' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(API))
