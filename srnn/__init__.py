"""srnn: SampleRNN (Mehri et al., ICLR 2017) on Keras 3 / TensorFlow 2, by default the original
three-tier model.

The package is laid out as the pipeline runs: audio in (`audio`), parts (`parts`), quantisation
(`quantize`), batches for truncated BPTT (`batches`), the architecture (`config`), the RNN maths
(`cells`), the layers, the tiers and the model (`layers`, `tiers`, `model`), a training run's
options (`options`, checked by `checks`) and the run (`fit`, then `training` and its `callbacks`,
watched by `watch`), generation (`generation`: request, chunks and audio; `sampler`: the compiled
loop; `rule`: the next level's choice) and its outputs (`clips`: files; `sinks`: streams; `server`:
the page), the checkpoint file (`checkpoint`) and the SavedModel (`export`); `engine` holds what
each Keras backend does its own way. `api` is srnn from Python; the command line (`cli`,
`commands`, `live`, with `flags` for its names of the options) is a layer over it.

Words, one per thing:
    sample      one value of the audio in time (16,000 a second); `--sample` is the command
                line's generation mode, and the sample tier the model's bottom tier
    level       a sample quantised: an integer in [0, q_levels)
    part        an 8-second piece of the corpus (preprocess.py's p0.wav, ...)
    chunk       a stretch of a part trained on at once (--cutlen), or of a generation made at once
    sequence    one generated signal; `n` (Python), --nseqs (command line), `n_seqs` (inside) count
                those asked for, `total` those generated (n_seqs of every label of a conditioned
                model asked for none)
    tier        a frame tier (an RNN over frames of F samples) or the sample tier (an MLP)
    sublayer    a Keras layer inside a tier (FrameTier.sublayers())
    option      what a run is told: a Python parameter (TrainOptions' fields, Model.generate's
                arguments), spelt as a flag on the command line (srnn.flags)
    load        srnn.load (a model, from a checkpoint; no framework) and checkpoint.load (the
                file, checked); engine.module() imports the framework

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

__version__ = "0.2.0"

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
