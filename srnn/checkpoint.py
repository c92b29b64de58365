"""The checkpoint file: one HDF5 file (h5py) with the weights, the model's hyperparameters and,
when written by training, the optimizer state and the training history for an exact resume.

Layout:
    attrs   format="srnn-checkpoint", version, config (ModelConfig as JSON)
    weights/<layer>/<weight>          float32 arrays, names from SampleRNN.named_weights()
    optimizer/<index>                 the optimizer's variables in order (attrs: name)
    train   attrs: epoch (last completed, from 0), seed, exp, train_bits, valid_bits, ...
            datasets: arrays of the training position (carried states of an interrupted run)
"""
import dataclasses
import json
import os

import h5py
import numpy as np

from .atomic import atomic_path
from .config import ModelConfig
from .errors import SrnnError, first_line

FORMAT = "srnn-checkpoint"
VERSION = 1


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
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
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
            except (KeyError, ValueError, TypeError) as e:
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
    except SrnnError:
        raise
    except (OSError, KeyError, ValueError, RuntimeError) as e:
        raise SrnnError(
            f"{path} cannot be read as an HDF5 checkpoint ({first_line(e)}); it may be truncated or "
            f"not a checkpoint: use another file"
        ) from None
    return Checkpoint(path=path, config=config, weights=weights, optimizer=optimizer, train=train)


def describe_sizes(c):
    return f"slowdim={c.slowdim}, dim={c.dim}, q_levels={c.q_levels}, emb_size={c.emb_size}, " \
           f"frames={c.big_frame}/{c.frame}"


def check_compatible(ckpt, config):
    """Raise a one-line error naming both sizes when `ckpt` cannot fill a model of `config`."""
    fields = ("slowdim", "dim", "q_levels", "emb_size", "big_frame", "frame")
    if any(getattr(ckpt.config, k) != getattr(config, k) for k in fields):
        raise SrnnError(
            f"{ckpt.path} holds a model with {describe_sizes(ckpt.config)}, but the flags ask for "
            f"{describe_sizes(config)}: pass matching --slowdim/--dim, or leave them out to take "
            f"them from the file"
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
