"""The checkpoint file: one HDF5 file (h5py) with the weights, the model's hyperparameters and,
when written by training, the optimizer state and the training history for an exact resume.

Layout:
    attrs   format="srnn-checkpoint", version, config (ModelConfig as JSON: the architecture)
    weights/<tier>/<layer>/<weight>   float32 arrays, names from SampleRNN.named_weights()
    optimizer/<index>                 the optimizer's variables in order (attrs: name)
    train   attrs: epoch (last completed, from 0), seed, exp, learning_rate, train_bits, ...
            datasets: arrays of the training position (state_0, state_1, ...: the carried states
            of an interrupted run, one per RNN layer)

Version 1 files (written before the tiers became layers) hold the original's three-tier model
under its old layer names; `load` renames them, so they load and sample as before.
"""
import dataclasses
import io
import json
import os

import h5py
import numpy as np

from .atomic import atomic_path
from .config import ModelConfig
from .errors import SrnnError, first_line

FORMAT = "srnn-checkpoint"
VERSION = 2
# version 1's layer names -> version 2's (the original's model: frame0 = slow, frame1 = mid)
V1_LAYERS = {"slow_gru": "frame0/rnn0", "slow_out": "frame0/out", "mid_in": "frame1/in", "mid_gru": "frame1/rnn0",
             "mid_out": "frame1/out", "embedding": "sample/embedding", "sample_in": "sample/in",
             "sample_h1": "sample/h1", "sample_h2": "sample/h2", "sample_out": "sample/out"}
V1_STATES = {"h_slow": "state_0", "h_mid": "state_1"}


def _upgrade_v1(weights, train):
    """A version 1 file's weights and training position under version 2's names."""
    renamed = {}
    for name, value in weights.items():
        layer, _, weight = name.partition("/")
        renamed[f"{V1_LAYERS.get(layer, layer)}/{weight}"] = value
    if train:
        train = {V1_STATES.get(k, k): v for k, v in train.items()}
    return renamed, train


@dataclasses.dataclass
class Checkpoint:
    path: str
    config: ModelConfig
    weights: dict  # name -> array
    optimizer: list = None  # [(name, array)] or None for a weights-only file
    train: dict = None  # epoch, seed, exp, histories; None for a weights-only file


def _write(path, config, weights, optimizer=None, train=None):
    """The one writer of the format: config, (name, array) weights, optimizer variables, training
    state; atomically, so a crash leaves the previous file (if any) untouched."""
    # The file is built in memory and written in one go: a full disk is then one OSError from a
    # plain write, never an I/O error inside HDF5 (whose half-closed objects crashed the process)
    image = io.BytesIO()
    with h5py.File(image, "w") as f:
        f.attrs["format"] = FORMAT
        f.attrs["version"] = VERSION
        f.attrs["config"] = config.to_json()
        g = f.create_group("weights")
        for name, value in weights:
            g.create_dataset(name, data=value)
        if optimizer is not None:
            og = f.create_group("optimizer")
            for i, v in enumerate(optimizer.variables):
                ds = og.create_dataset(f"{i:05d}", data=np.asarray(v.numpy()))
                ds.attrs["name"] = v.path
        if train is not None:
            tg = f.create_group("train")
            for key, value in train.items():
                if isinstance(value, np.ndarray):
                    tg.create_dataset(key, data=value)
                else:
                    tg.attrs[key] = json.dumps(value)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as out:
            out.write(image.getbuffer())


def save(path, model, optimizer=None, train=None):
    """Write a model's checkpoint (with the optimizer state and training state, when given)."""
    _write(path, model.cfg, [(name, np.asarray(w.numpy())) for name, w in model.named_weights()], optimizer, train)


def load(path):
    """Read a checkpoint; every way a file can be wrong becomes a one-line SrnnError."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise SrnnError(f"{path} not found: give a checkpoint written by train_srnn.py (*.h5)")
    if os.path.isdir(path):
        raise SrnnError(f"{path} is a folder: give a checkpoint file (*.h5)")
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != FORMAT or "weights" not in f:
                raise SrnnError(
                    f"{path} is an HDF5 file but not an srnn checkpoint: give a file written by "
                    f"train_srnn.py"
                )
            try:
                config = ModelConfig.from_json(f.attrs["config"])
            except (KeyError, ValueError, TypeError, AttributeError) as e:
                raise SrnnError(f"{path} has a damaged model description ({e}): use another checkpoint") from None
            weights = {}
            f["weights"].visititems(
                lambda name, obj: weights.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None
            )
            optimizer = None
            if "optimizer" in f:
                og = f["optimizer"]
                optimizer = [(og[k].attrs.get("name", k), og[k][()]) for k in sorted(og)]
            train = None
            if "train" in f:
                train = {k: json.loads(v) for k, v in f["train"].attrs.items()}
                train.update({k: f["train"][k][()] for k in f["train"]})
            if int(f.attrs.get("version", 1)) < 2:
                weights, train = _upgrade_v1(weights, train)
            for name, value in weights.items():
                if not isinstance(value, np.ndarray) or value.dtype.kind not in "fiu":
                    raise SrnnError(f"{path}: weight {name} is not an array of numbers: the file is damaged; "
                                    f"use another checkpoint")
    except SrnnError:
        raise
    except (OSError, KeyError, ValueError, RuntimeError) as e:
        raise SrnnError(
            f"{path} cannot be read as an HDF5 checkpoint ({first_line(e)}); it may be truncated or "
            f"not a checkpoint: use another file"
        ) from None
    return Checkpoint(path=path, config=config, weights=weights, optimizer=optimizer, train=train)


# the settings that shape the weights (sample_rate and qtype do not, and are checked by the CLI)
ARCHITECTURE = ("frames", "rnn", "rnn_layers", "skip", "slowdim", "dim", "emb_size", "q_levels", "labels")


def check_compatible(ckpt, config):
    """Raise a one-line error naming both architectures when `ckpt` cannot fill a model of
    `config`."""
    if any(getattr(ckpt.config, k) != getattr(config, k) for k in ARCHITECTURE):
        raise SrnnError(
            f"{ckpt.path} holds a model with {ckpt.config.describe()}, but the flags ask for "
            f"{config.describe()}: leave the architecture flags out to take them from the file"
        )


def apply_weights(ckpt, model):
    """Assign the file's weights to `model` (whose config must be compatible)."""
    check_compatible(ckpt, model.cfg)
    for name, w in model.named_weights():
        if name not in ckpt.weights:
            raise SrnnError(f"{ckpt.path} lacks the weight {name}: the file is incomplete; use another checkpoint")
        value = ckpt.weights[name]
        if tuple(value.shape) != tuple(w.shape):
            raise SrnnError(
                f"{ckpt.path}: weight {name} has shape {value.shape}, the model needs {tuple(w.shape)}"
            )
        if not np.all(np.isfinite(value)):
            raise SrnnError(f"{ckpt.path}: weight {name} holds NaN or infinite values: use an earlier checkpoint")
        w.assign(value)


def apply_optimizer(ckpt, optimizer):
    """Restore the optimizer's moments; False (and nothing changed) if the file has none or they
    do not fit."""
    if not ckpt.optimizer or len(ckpt.optimizer) != len(optimizer.variables):
        return False
    if any(tuple(v.shape) != tuple(a.shape) for v, (_, a) in zip(optimizer.variables, ckpt.optimizer)):
        return False
    for v, (_, a) in zip(optimizer.variables, ckpt.optimizer):
        v.assign(a)
    return True


def strip(src, dst):
    """Copy a checkpoint's weights and hyperparameters only (no optimizer state, no history):
    a third of the size, for sharing a model to sample from. `dst` is written atomically."""
    ckpt = load(src)
    _write(dst, ckpt.config, ckpt.weights.items())
