"""Truncated-BPTT training: compiled steps, the epoch loop, checkpoints and costs.png."""
import dataclasses
import math
import os
import sys
import time

import numpy as np

from . import checkpoint, names
from .atomic import atomic_path
from .batches import Feeder, read_prompts, split_files
from .errors import SrnnError
from .quiet import import_tensorflow

tf = import_tensorflow()
import keras  # noqa: E402  (after TensorFlow is initialised quietly)

from .model import SampleRNN, loss_bits  # noqa: E402

LEARNING_RATE = 1e-3
GRAD_CLIP = 1.0  # elementwise, as the reference


def use_xla(cfg):
    """XLA fuses the many small per-timestep ops of a small model into one program (several
    times faster); for large models the big matmuls dominate and XLA gains nothing, so plain
    TensorFlow graphs are used there."""
    return max(cfg.dim, cfg.slowdim) <= 512


def clip_gradients(grads, clip=GRAD_CLIP):
    return [tf.clip_by_value(g, -clip, clip) for g in grads]


class Steps:
    """The compiled training and evaluation steps for one chunk.

    Each takes (x, mask, reset, h_slow, h_mid) and returns (loss_bits, h_slow, h_mid); the states
    are returned as values, never differentiated through across chunks (truncated BPTT)."""

    def __init__(self, model, learning_rate=LEARNING_RATE, clip=GRAD_CLIP, xla=None):
        self.model, self.clip = model, clip
        self.optimizer = keras.optimizers.Adam(learning_rate=learning_rate)
        self.optimizer.build(model.trainable_variables)
        xla = use_xla(model.cfg) if xla is None else xla
        self.train_step = tf.function(self._train, jit_compile=xla)
        self.eval_step = tf.function(self._eval, jit_compile=xla)

    def gradients(self, x, mask, reset, h_slow, h_mid):
        """Loss, clipped gradients and new states (not compiled; used by tests and _train)."""
        bf = self.model.cfg.big_frame
        with tf.GradientTape() as tape:
            logits, h_slow, h_mid = self.model.forward(x, h_slow, h_mid, reset)
            loss = loss_bits(logits, x[:, bf:], mask)
        grads = tape.gradient(loss, self.model.trainable_variables)
        return loss, clip_gradients(grads, self.clip), h_slow, h_mid

    def _train(self, x, mask, reset, h_slow, h_mid):
        loss, grads, h_slow, h_mid = self.gradients(x, mask, reset, h_slow, h_mid)
        self.optimizer.apply(grads, self.model.trainable_variables)
        return loss, h_slow, h_mid

    def _eval(self, x, mask, reset, h_slow, h_mid):
        logits, h_slow, h_mid = self.model.forward(x, h_slow, h_mid, reset)
        return loss_bits(logits, x[:, self.model.cfg.big_frame:], mask), h_slow, h_mid


@dataclasses.dataclass
class TrainOptions:
    exp: str
    nepochs: int
    batchsize: int
    trainstop: float
    validstop: float
    cutlen: int
    svepoch: int = -1
    seed: int = 1337
    load: str = None
    parts_root: str = "blizzard"
    out_dir: str = "."
    xla: bool = None  # None: chosen by model size


class NonFiniteLoss(SrnnError):
    exit_code = 3


def run_epoch(steps, feeder, batches, train, bar=None):
    """One pass over `batches`; returns the mean loss in bits over the chunks (masked, weighted by
    real samples) and the number of chunks."""
    step = steps.train_step if train else steps.eval_step
    total, count, n_chunks, h_slow, h_mid = 0.0, 0.0, 0, None, None
    for chunk in feeder.chunks(batches):
        if h_slow is None or chunk.reset:
            h_slow, h_mid = steps.model.zero_states(chunk.x.shape[0])
        loss, h_slow, h_mid = step(chunk.x, chunk.mask, tf.constant(chunk.reset, tf.float32), h_slow, h_mid)
        loss = float(loss)
        if not math.isfinite(loss):
            raise NonFiniteLoss(f"the {'training' if train else 'valid'} loss became {loss} at chunk {n_chunks}")
        n = float(chunk.mask.sum())
        total, count, n_chunks = total + loss * n, count + n, n_chunks + 1
        if bar is not None:
            bar.add(1, values=[("loss in bits", total / max(count, 1.0))])  # running epoch mean
    return total / max(count, 1.0), n_chunks


def plot_costs(path, train_bits, valid_bits):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    epochs = np.arange(len(train_bits))
    ax.plot(epochs, train_bits, "o-", label="training")
    ax.plot(epochs[:len(valid_bits)], valid_bits, "s-", label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (bits per sample)")
    ax.set_title("SampleRNN costs")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def train(cfg, opts, log=print):
    """Train a model of `cfg` on `blizzard/{exp}_parts`; returns the training history."""
    parts_dir = names.exp_parts_dir(opts.exp, opts.parts_root)
    files = read_prompts(parts_dir, hint=f"run `python preprocess.py {os.path.join(opts.parts_root, opts.exp)}` first")
    train_files, valid_files, _ = split_files(files, opts.trainstop, opts.validstop)
    warn = lambda m: print(m, file=sys.stderr)  # noqa: E731
    train_feed = Feeder(train_files, opts.batchsize, opts.cutlen, cfg.qtype, cfg.sample_rate, "training", warn)
    valid_feed = Feeder(valid_files, opts.batchsize, opts.cutlen, cfg.qtype, cfg.sample_rate, "validation", warn)
    if not os.access(opts.out_dir or ".", os.W_OK):
        raise SrnnError(f"cannot write checkpoints to {os.path.abspath(opts.out_dir)}: run from a writable folder")

    ckpt = checkpoint.load(opts.load) if opts.load else None
    keras.utils.set_random_seed(opts.seed)  # initial weights; data order is seeded per epoch
    model = SampleRNN(cfg)
    xla = use_xla(cfg) if opts.xla is None else opts.xla
    steps = Steps(model, xla=xla)
    history = {"train_bits": [], "valid_bits": []}
    start = 0
    if ckpt is not None:
        checkpoint.apply_weights(ckpt, model)
        if ckpt.train and checkpoint.apply_optimizer(ckpt, steps.optimizer):
            start = int(ckpt.train["epoch"]) + 1
            history = {k: list(ckpt.train.get(k, [])) for k in history}
            log(f"resuming from {opts.load}: {start} epoch(s) done, optimizer state restored")
        else:
            log(f"note: {opts.load} holds weights only; training starts at epoch 0 from them")
    model.summary(print_fn=lambda s, line_break=True: log(s))
    log(f"training on {len(train_files)} part(s), validating on {len(valid_files)}; "
        f"batch {opts.batchsize}, cutlen {opts.cutlen}, {opts.nepochs} epoch(s){', XLA' if xla else ''}")
    if start >= opts.nepochs:
        log(f"{opts.load} has already been trained for {start} epoch(s): raise --nepochs to continue")
        return history

    saved = None
    verbose = 1 if sys.stdout.isatty() else 2  # a redirected log gets one line per epoch, not per step
    for epoch in range(start, opts.nepochs):
        t0 = time.time()
        batches = train_feed.batches(seed=[opts.seed, epoch])
        bar = keras.utils.Progbar(train_feed.count_chunks(batches), verbose=verbose, unit_name="chunk",
                                   stateful_metrics=["loss in bits"])
        log(f"Epoch {epoch}/{opts.nepochs - 1}")
        try:
            train_bits, n_chunks = run_epoch(steps, train_feed, batches, train=True, bar=bar)
            valid_bits, _ = run_epoch(steps, valid_feed, valid_feed.batches(), train=False)
        except NonFiniteLoss as e:
            where = f"the last good checkpoint is {saved}" if saved else "no checkpoint was written"
            raise NonFiniteLoss(f"epoch {epoch}: {e}; stopped, {where}; try a lower learning rate "
                                f"or check the data") from None
        history["train_bits"].append(train_bits)
        history["valid_bits"].append(valid_bits)
        log(f"Epoch {epoch} training loss in bits {train_bits:.5f} ({n_chunks} chunks)")
        log(f"Epoch {epoch} valid loss in bits {valid_bits:.5f}")
        log(f"Epoch {epoch} took {time.time() - t0:.1f} seconds")
        plot_costs(os.path.join(opts.out_dir, names.COSTS), history["train_bits"], history["valid_bits"])
        last = epoch == opts.nepochs - 1
        # The original saved when epoch % svepoch == 0 (so after the first epoch too) and at the end.
        if last or (opts.svepoch > 0 and epoch % opts.svepoch == 0):
            saved = os.path.join(opts.out_dir, names.checkpoint_name(opts.exp, cfg.dim, epoch))
            state = {"epoch": epoch, "seed": opts.seed, "exp": opts.exp, **history}
            checkpoint.save(saved, model, steps.optimizer, state)
            log(f"saved {saved}")
    return history
