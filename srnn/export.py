"""--export DIR: the trained model as a TensorFlow SavedModel that generates audio by itself.

The SavedModel holds the weights and one compiled endpoint,

    generate(n_seqs, n_samples, temperature, seed) -> {"levels": int32 (n_seqs, n_samples),
                                                       "audio": float32 (n_seqs, n_samples)}

the same loop as `train_srnn.py --sample` (so the same levels for the same seed), followed by the
checkpoint's dequantisation and the scaling into [-0.475, 0.475] that --sample's WAVs have (silence
at zero; --scaling fixed or minmax as the flag says). Loading it needs TensorFlow only:

    import tensorflow as tf
    m = tf.saved_model.load("DIR")
    out = m.generate(n_seqs=2, n_samples=16000, temperature=1.0, seed=1337)

The inputs are checked in the graph: n_seqs in [1, 4096], n_samples positive, n_seqs x n_samples
at most 2^28, temperature positive and finite (one, or one per sequence), mix finite, non-negative,
one row per sequence, none all zero; anything else raises tf.errors.InvalidArgumentError saying
which, before anything is allocated.

A model conditioned on labels takes a fifth input, `mix` (n_seqs, n_labels) float32: each
sequence's label weights (one-hot for one label), in the order of the folder's `labels.txt`.
"""
import glob
import os
import shutil
import tempfile

import numpy as np

from . import names
from .atomic import check_new_folder, may_be_full
from .labels import label_problem
from .errors import SrnnError, first_line
from .quantize import AUDIO_PEAK, dequantize, q_zero
from .quiet import import_tensorflow
from .rule import Rule
from .sampler import Start

tf = import_tensorflow()
import keras  # noqa: E402


def _scale(x, scaling, zero):
    """srnn.quantize.scale_audio per sequence, in TensorFlow. peak: `zero` at 0, the largest
    magnitude at +-peak; fixed: `zero` at 0, times peak; minmax: min-max into [-peak, peak];
    constant (or silent) -> 0."""
    if scaling == "fixed":
        return (x - zero) * AUDIO_PEAK
    if scaling == "peak":
        x = x - zero
        top = tf.reduce_max(tf.abs(x), axis=1, keepdims=True)
        return tf.where(top > 0, x * (AUDIO_PEAK / tf.maximum(top, 1e-30)), tf.zeros_like(x))
    lo = tf.reduce_min(x, axis=1, keepdims=True)
    hi = tf.reduce_max(x, axis=1, keepdims=True)
    scaled = (x - lo) / tf.maximum(hi - lo, 1e-30) * (2.0 * AUDIO_PEAK) - AUDIO_PEAK
    return tf.where(hi > lo, scaled, tf.zeros_like(x))


# the exported generate's limits (its outputs and working arrays take ~16 bytes a sample)
MAX_SEQS = 4096
MAX_TOTAL_SAMPLES = 1 << 28  # n_seqs x n_samples: 4.7 hours of 16 kHz audio in all, ~4 GB


def input_checks(n_seqs, n_samples, temperature, mix=None):
    """The exported generate's input checks, as graph ops that raise InvalidArgumentError."""
    def require(ok, message):
        return tf.debugging.Assert(ok, [f"generate: {message}"])

    total = tf.cast(n_seqs, tf.int64) * tf.cast(n_samples, tf.int64)
    t = tf.cast(temperature, tf.float32)
    checks = [
        require(n_seqs > 0, "n_seqs must be positive"),
        require(n_seqs <= MAX_SEQS, f"n_seqs must be at most {MAX_SEQS}"),
        require(n_samples > 0, "n_samples must be positive"),
        require(total <= MAX_TOTAL_SAMPLES, f"n_seqs x n_samples must be at most {MAX_TOTAL_SAMPLES}"),
        require(tf.reduce_all(tf.math.is_finite(t) & (t > 0)), "temperature must be positive and finite"),
        require(tf.logical_or(tf.size(t) == 1, tf.size(t) == n_seqs),
                "temperature takes one value, or one per sequence"),
    ]
    if mix is not None:
        checks += [
            require(tf.shape(mix)[0] == n_seqs, "mix needs one row per sequence (n_seqs rows)"),
            require(tf.reduce_all(tf.math.is_finite(mix) & (mix >= 0)), "mix must be finite and non-negative"),
            require(tf.reduce_all(tf.reduce_sum(mix, axis=1) > 0), "each row of mix needs a positive weight"),
        ]
    return checks


def export(model, path, scaling="peak"):
    """Write `model` as a SavedModel with the `generate` endpoint into the folder `path` (a new or
    empty folder; written next to it first and renamed, so a failure leaves nothing half-made);
    its audio scaled by `scaling` (srnn.quantize.SCALINGS)."""
    path = os.path.abspath(os.fspath(path))
    check_new_folder(path, "--export")
    c = model.cfg
    bf = c.big_frame
    # levels -> float, from the checkpoint's own quantisation (the NumPy functions, tabulated)
    values = dequantize(np.arange(c.q_levels), c.qtype, c.q_levels).astype(np.float32)
    table, zero = tf.constant(values), float(values[q_zero(c.q_levels)])
    sampler = model.sampler(xla=True)

    def generate(n_seqs, n_samples, temperature, seed, mix=None):
        # the caller is any TensorFlow program, without the command line's checks: the inputs are
        # checked here, in the graph, before anything is allocated (an InvalidArgumentError that
        # says which, instead of silence, one sample, or the caller's memory exhausted)
        with tf.control_dependencies(input_checks(n_seqs, n_samples, temperature, mix)):
            rule = Rule(tf.broadcast_to(tf.cast(temperature, tf.float32), [n_seqs]))
            silence = tf.fill([n_seqs, bf], tf.constant(q_zero(c.q_levels), tf.int32))
            start = Start(model.initial_states(n_seqs), silence)
            levels = sampler.run((n_samples + bf - 1) // bf, rule, seed, start, 0, mix, "float32")[0]
        levels = levels[:, :n_samples]
        return {"levels": levels, "audio": _scale(tf.gather(table, levels), scaling, zero)}

    archive = keras.export.ExportArchive()
    archive.track(model)
    signature = [tf.TensorSpec([], tf.int32, name="n_seqs"), tf.TensorSpec([], tf.int32, name="n_samples"),
                 tf.TensorSpec(None, tf.float32, name="temperature"), tf.TensorSpec([], tf.int32, name="seed")]
    if c.labels:
        signature.append(tf.TensorSpec([None, c.n_labels], tf.float32, name="mix"))
    archive.add_endpoint("generate", generate, input_signature=signature)
    parent = os.path.dirname(path)
    prefix = names.export_staging(path)
    # an export to this folder killed before its rename left its staging folder: the export that
    # now makes the folder removes it (`path` is still new or empty, check_new_folder said so)
    for stale in glob.glob(glob.escape(prefix) + "*"):
        shutil.rmtree(stale, ignore_errors=True)
    try:
        os.makedirs(parent, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=os.path.basename(prefix), dir=parent)
    except OSError as e:
        raise SrnnError(f"cannot write --export {path} ({e.strerror}): choose another folder") from None
    try:
        archive.write_out(staging, verbose=False)
        if c.labels:  # the columns of `mix`, one line each (the labels were checked when read)
            if any(label_problem(label) for label in c.labels):
                raise SrnnError(f"cannot write {names.LABELS_FILE}: a label is not one line of text")
            with open(os.path.join(staging, names.LABELS_FILE), "w", encoding="utf-8") as f:
                f.write("".join(f"{label}\n" for label in c.labels))
        if os.path.isdir(path):
            os.rmdir(path)  # the empty folder the user named
        os.replace(staging, path)
    except (OSError, tf.errors.OpError) as e:  # TensorFlow says a full disk with its own errors
        full = "; the disk may be full" if may_be_full(e) else ""
        raise SrnnError(f"cannot write --export {path} ({first_line(e)}{full}): "
                        f"{'free some space or ' if full else ''}choose another folder") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path
