"""Truncated-BPTT training: compiled steps, the epoch loop, checkpoints and costs.png."""
import dataclasses
import math
import os
import signal
import sys
import time

import numpy as np

from . import checkpoint, engine, names
from .distribute import is_chief, make_strategy
from .errors import SrnnError, first_line, one_line
from .options import LEARNING_RATE, TrainOptions, prepare  # noqa: F401  (TrainOptions is part of this module's API)
from .plots import plot_costs
from .precision import training_note
from .watch import Board, audition, describe_clips

E = engine.load()
import keras  # noqa: E402  (after the engine has loaded its framework quietly)

from .engine.common import GRAD_CLIP, use_xla  # noqa: E402,F401  (part of this module's API)
from .model import SampleRNN  # noqa: E402

Steps, DistributedSteps, LossScale = E.Steps, getattr(E, "DistributedSteps", None), getattr(E, "LossScale", None)


class NonFiniteLoss(SrnnError):
    exit_code = 3


class Interrupted(SrnnError):
    label = "interrupted"


class _Stop(Exception):
    """Raised inside a pass when a signal asked training to stop."""


class StopRequest:
    """SIGINT/SIGTERM: the first asks the loop to stop after the current step (and save); a second
    SIGINT stops at once."""

    def __init__(self, log):
        self.signum, self.log, self._saved = None, log, {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._saved[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame):
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum
        self.log(f"\n{signal.Signals(signum).name}: finishing the current step, then saving "
                 f"(Ctrl-C again stops at once, without saving)")


@dataclasses.dataclass
class Pass:
    """Where a pass over a split is: the next (batch, chunk), the carried states, the loss sums."""
    batch: int = 0
    chunk: int = 0
    total: float = 0.0  # sum of loss_bits * real samples
    count: float = 0.0  # real samples
    n_chunks: int = 0
    states: object = None  # the carried states (Steps' form)
    label_total: np.ndarray = None  # per label (evaluation of a conditioned model): sums of bits
    label_count: np.ndarray = None  # ... and of real samples

    @property
    def bits(self):
        return self.total / max(self.count, 1.0)

    def add_labels(self, bits, count):
        self.label_total = bits if self.label_total is None else self.label_total + bits
        self.label_count = count if self.label_count is None else self.label_count + count

    def label_bits(self, vocab):
        """{label: mean bits} for the labels this pass saw."""
        if self.label_total is None:
            return {}
        return {label: t / c for label, t, c in zip(vocab, self.label_total, self.label_count) if c > 0}

    def to_state(self, steps):
        state = {"next_batch": self.batch, "next_chunk": self.chunk, "partial_total": self.total,
                 "partial_count": self.count, "partial_chunks": self.n_chunks}
        arrays = None if self.states is None else steps.states_to_numpy(self.states)
        if arrays is not None:
            state.update({f"state_{i}": a for i, a in enumerate(arrays)})
        return state

    @classmethod
    def from_state(cls, st, steps):
        pos = cls(batch=int(st["next_batch"]), chunk=int(st["next_chunk"]), total=float(st["partial_total"]),
                  count=float(st["partial_count"]), n_chunks=int(st["partial_chunks"]))
        n = len(steps.model.state_sizes())
        if all(f"state_{i}" in st for i in range(n)):
            pos.states = steps.states_from_numpy([st[f"state_{i}"] for i in range(n)])
        elif pos.chunk:  # no carried states saved (a cluster run): redo that batch from its start
            pos.chunk = 0
        return pos


def check_position(pos, feeder, batches, opts):
    """A resumed position must lie in this epoch: a checkpoint's `next_batch` beyond it would skip
    the whole epoch and save it as trained (a crafted file, or another corpus or --batchsize)."""
    n = len(batches)
    if pos.batch > n or (pos.batch < n and pos.chunk > feeder.batch_chunk_count(batches[pos.batch])):
        raise SrnnError(f"{opts.load} stopped at batch {pos.batch}, chunk {pos.chunk} of an epoch, but this corpus "
                        f"with --batchsize {opts.batchsize} and --cutlen {feeder.cutlen} has {n} batch(es) an epoch: "
                        f"resume with the corpus and flags it was trained with")


def run_pass(steps, feeder, batches, train, pos=None, bar=None, stop=None, prefetch=True, on_step=None):
    """One pass over `batches` (training or evaluation), from `pos` on; updates and returns `pos`.

    The loss is the mean in bits over the pass's real samples. A signal seen by `stop` raises
    _Stop after the current step, with `pos` at the next chunk, so the pass can be resumed exactly.
    `on_step(loss)` is called after every step (TensorBoard's per-step loss).
    """
    pos = pos or Pass()
    step = steps.train_step if train else steps.eval_step
    for b, seqs in feeder.loaded(batches, start=pos.batch, prefetch=prefetch):
        for c, chunk in enumerate(feeder.batch_chunks(seqs, batches[b])):
            if b == pos.batch and c < pos.chunk:
                continue  # done before an interruption
            if chunk.reset:
                pos.states = steps.zero_states(chunk.x.shape[0])  # ignored: reset uses h0
            out = step(chunk.x, chunk.mask, E.scalar(chunk.reset), pos.states, chunk.mix)
            loss, pos.states = float(out[0]), out[1]
            if not train and chunk.mix.shape[1]:
                counts = chunk.mix.T.astype(np.float64) @ chunk.mask.sum(axis=1)  # real samples per label
                pos.add_labels(np.asarray(out[2], np.float64), counts)
            if not math.isfinite(loss):
                raise NonFiniteLoss(f"the {'training' if train else 'valid'} loss became {loss} "
                                    f"at chunk {pos.n_chunks}")
            n = float(chunk.mask.sum())
            pos.total, pos.count, pos.n_chunks = pos.total + loss * n, pos.count + n, pos.n_chunks + 1
            pos.batch, pos.chunk = b, c + 1
            if bar is not None:
                bar.update(pos.n_chunks, values=[("loss in bits", pos.bits)])  # running epoch mean
            if on_step is not None:
                on_step(loss)
            if stop is not None and stop.signum is not None:
                raise _Stop
        pos.batch, pos.chunk = b + 1, 0
    return pos


def train(cfg, opts, log=print, splits=None):
    """Train a model of `cfg` on `blizzard/{exp}_parts`; returns the history."""
    splits = splits or prepare(cfg, opts)
    train_feed, valid_feed, test_feed = splits.train, splits.valid, splits.test
    train_files, valid_files = train_feed.files, valid_feed.files
    test_files = test_feed.files if test_feed else []

    ckpt = checkpoint.load(opts.load) if opts.load else None
    if E.NAME == "jax" and opts.distribute == "mirrored":  # keras.distribution, not tf.distribute
        log(f"mirrored: {E.data_parallel(opts.devices)} device(s), keras.distribution.DataParallel")
        strategy = None
    else:
        strategy = make_strategy(opts.distribute, opts.devices)
    chief = is_chief(opts.distribute)
    if not chief:
        log = lambda *a, **k: None  # noqa: E731  (one voice per cluster: the chief's)
    E.seed(opts.seed)  # initial weights; data order is seeded per epoch
    lr = LEARNING_RATE if opts.learning_rate is None else opts.learning_rate
    if strategy is None:
        model = SampleRNN(cfg, precision=opts.precision)
        xla = use_xla(cfg) if opts.xla is None else opts.xla
        steps = Steps(model, learning_rate=lr, xla=xla)
    else:
        with strategy.scope():
            model = SampleRNN(cfg, precision=opts.precision)
            steps = DistributedSteps(model, strategy, learning_rate=lr)
        xla = False
        log(f"{opts.distribute}: {steps.replicas} replica(s), {opts.batchsize // steps.replicas} "
            f"sequence(s) each")
    history = {"train_bits": [], "valid_bits": [], **({"valid_label_bits": []} if cfg.labels else {})}
    start, resume = 0, None
    if ckpt is not None:
        checkpoint.apply_weights(ckpt, model)
        if ckpt.train and checkpoint.apply_optimizer(ckpt, steps.optimizer):
            start = int(ckpt.train["epoch"]) + 1
            history = {k: list(ckpt.train.get(k, [])) for k in history}
            if "next_batch" in ckpt.train:
                resume = Pass.from_state(ckpt.train, steps)
            if steps.loss_scale is not None:
                steps.loss_scale.restore(ckpt.train)
            where = f", inside epoch {start} at chunk {resume.n_chunks}" if resume else ""
            log(f"resuming from {opts.load}: {start} epoch(s) done{where}; optimizer state restored")
            if opts.learning_rate is not None:  # the restored state holds the old rate
                steps.optimizer.learning_rate.assign(opts.learning_rate)
        else:
            log(f"note: {opts.load} holds weights only; training starts at epoch 0 from them")
    model.summary(print_fn=lambda s, line_break=True: log(s))
    log(f"model: {cfg.describe()}; learning rate {float(steps.optimizer.learning_rate.numpy()):g}")
    log(f"training on {len(train_files)} part(s), validating on {len(valid_files)}"
        f"{f', testing on {len(test_files)}' if test_files else ''}; batch {opts.batchsize}, "
        f"cutlen {train_feed.cutlen}, {opts.nepochs} epoch(s){', XLA' if xla else ''}"
        f"{'' if opts.precision == 'float32' else ', ' + opts.precision}")
    note = training_note(opts.precision, E.gpus())
    if note:
        log(note)
    log(f"losses are bits per sample with {cfg.qtype} quantisation to {cfg.q_levels} levels: compare them "
        f"only with runs of the same --qtype and --q-levels")
    if start >= opts.nepochs:
        log(f"{opts.load} has already been trained for {start} epoch(s): raise --nepochs to continue")
        return history

    def save(name, epoch, extra=None):
        path = os.path.join(opts.out_dir, names.checkpoint_name(opts.exp, cfg.dim, name))
        if chief:  # in a cluster only the chief writes; every worker holds the same weights
            checkpoint.save(path, model, steps.optimizer,
                            {"epoch": epoch, "seed": opts.seed, "exp": opts.exp, "precision": opts.precision,
                             "learning_rate": float(steps.optimizer.learning_rate.numpy()), **history,
                             **(steps.loss_scale.state() if steps.loss_scale else {}), **(extra or {})})
        return path

    valid = history["valid_bits"]
    best = int(np.argmin(valid)) if valid else None
    saved, best_weights = None, None
    if best is not None and best == start - 1:  # the loaded weights are the best epoch's
        best_weights = [w.numpy() for _, w in model.named_weights()]
    started = time.time()
    board = Board(opts.tensorboard if chief else None, log)  # one writer per cluster: the chief's
    on_step = None
    if board.writer is not None:
        on_step = lambda loss: board.scalars(steps.iterations(), **{"train/loss_bits": loss})  # noqa: E731
    verbose = (1 if sys.stdout.isatty() else 2) if chief else 0  # a redirected log gets one line per epoch, not per step
    with StopRequest(log) as stop:
        for epoch in range(start, opts.nepochs):
            t0 = time.time()
            batches = train_feed.batches(seed=[opts.seed, epoch])
            log(f"Epoch {epoch}/{opts.nepochs - 1}")
            bar = keras.utils.Progbar(train_feed.count_chunks(batches), verbose=verbose, unit_name="chunk",
                                      stateful_metrics=["loss in bits"])
            tp, resume = resume or Pass(), None
            check_position(tp, train_feed, batches, opts)
            count_before = tp.count
            try:
                try:
                    run_pass(steps, train_feed, batches, True, tp, bar, stop, on_step=on_step)
                finally:  # the weights as trained, in the model's variables (the JAX engine's
                    steps.sync()  # steps hold them until then), for saving, auditions and tests
                train_seconds = time.time() - t0
                vp = run_pass(steps, valid_feed, valid_feed.batches(), False, stop=stop)
            except _Stop:
                path = save("interrupted", epoch - 1, tp.to_state(steps))
                raise _interrupted(stop.signum, epoch, tp, path) from None
            except NonFiniteLoss as e:
                where = f"the last good checkpoint is {saved}" if saved else "no checkpoint was written"
                raise NonFiniteLoss(f"epoch {epoch}: {e}; stopped, {where}; try a lower learning rate "
                                    f"or check the data") from None
            history["train_bits"].append(tp.bits)
            history["valid_bits"].append(vp.bits)
            log(f"Epoch {epoch} training loss in bits {tp.bits:.5f} ({tp.n_chunks} chunks)")
            log(f"Epoch {epoch} valid loss in bits {vp.bits:.5f}")
            per_label = vp.label_bits(cfg.labels)
            if per_label:
                log(f"Epoch {epoch} valid loss per label: {_per_label(per_label)}")
                history["valid_label_bits"].append([per_label.get(k, float("nan"))
                                                    for k in cfg.labels])
            log(f"Epoch {epoch} took {time.time() - t0:.1f} seconds")
            board.scalars(epoch, **{"epoch/train_bits": tp.bits, "epoch/valid_bits": vp.bits,
                                    "epoch/seconds": time.time() - t0,
                                    "epoch/samples_per_s": (tp.count - count_before) / max(train_seconds, 1e-9),
                                    "epoch/learning_rate": steps.optimizer.learning_rate.numpy(),
                                    **{f"epoch/valid_bits/{k}": v for k, v in per_label.items()}})
            if best is None or vp.bits < valid[best]:
                best = epoch
                best_weights = [w.numpy() for _, w in model.named_weights()]  # for the test loss
                log(f"best so far: saved {save('best', epoch)}")
            if chief:
                plot_costs(os.path.join(opts.out_dir, names.COSTS), history["train_bits"], valid, best)
            stale = epoch - best
            patience_over = opts.patience > 0 and stale >= opts.patience
            time_over = opts.max_minutes is not None and time.time() - started >= 60 * opts.max_minutes
            early = patience_over or time_over
            # The original saved when epoch % svepoch == 0 (so after the first epoch too) and at the end.
            if early or epoch == opts.nepochs - 1 or (opts.svepoch > 0 and epoch % opts.svepoch == 0):
                saved = save(epoch, epoch)
                log(f"saved {saved}")
            # the audition after the epoch's checkpoints: a side job never costs the epoch
            if opts.audition and (epoch + 1) % opts.audition == 0 and chief:
                run_audition(model, opts, epoch, board, log)
            board.flush()
            if patience_over:
                log(f"no better validation loss for {stale} epoch(s) (--patience {opts.patience}): "
                    f"stopping; the best epoch is {best}")
            elif time_over and epoch < opts.nepochs - 1:
                log(f"{opts.max_minutes:g} minute(s) of training are over (--max-minutes): stopping; the best "
                    f"epoch is {best}")
            if early:
                break
    if test_feed is not None and best is not None and best_weights is None:
        # the best epoch was before this run: its file holds it, if it is where training writes
        best_path = os.path.join(opts.out_dir, names.checkpoint_name(opts.exp, cfg.dim, "best"))
        if os.path.exists(best_path):
            best_weights = [checkpoint.load(best_path).weights[n] for n, _ in model.named_weights()]
        else:
            log(f"note: no test loss: the best epoch ({best}) was before this run and {best_path} is missing")
    if test_feed is not None and best_weights is not None:
        for (_, w), value in zip(model.named_weights(), best_weights):
            w.assign(value)
        # one device: the test split may end in a smaller batch, and a cluster's workers need not
        # agree on anything for it
        evaluator = steps if strategy is None else Steps(model, xla=False, evaluate_only=True)
        tested = run_pass(evaluator, test_feed, test_feed.batches(), False)
        history["test_bits"] = test_bits = tested.bits
        log(f"Test loss in bits {test_bits:.5f} (best model, epoch {best}, {len(test_files)} part(s))")
        per_label = tested.label_bits(cfg.labels)
        if per_label:
            log(f"Test loss per label: {_per_label(per_label)}")
            history["test_label_bits"] = [per_label.get(k, float("nan")) for k in cfg.labels]
        board.scalars(best, **{"test/bits": test_bits, **{f"test/bits/{k}": v for k, v in per_label.items()}})
    board.close()
    if opts.export and chief:
        from .export import export

        if best_weights is not None:  # the best epoch's model, as the test loss
            for (_, w), value in zip(model.named_weights(), best_weights):
                w.assign(value)
        which = f"the best epoch ({best})" if best_weights is not None else "the last epoch"
        log(f"exported {which} to {export(model, opts.export)}")
    return history


def run_audition(model, opts, epoch, board, log):
    """The epoch's audition clips, logged and sent to TensorBoard; any failure of it (a file in the
    place of EXP_samples, a full disk) is a warning: training goes on."""
    try:
        clips = audition(model, opts.out_dir, opts.exp, epoch, opts.audition_seqs, opts.audition_seconds,
                         seed=opts.seed)
    except Exception as e:  # noqa: BLE001  (whatever it is, it must not end the training)
        log(f"warning: the audition of epoch {epoch} failed ({one_line(first_line(e))}): training goes on")
        return
    log(f"Epoch {epoch} {describe_clips(clips)}")
    board.clips(epoch, clips, model.cfg.sample_rate)


def _per_label(bits):
    return ", ".join(f"{label} {b:.5f}" for label, b in bits.items())


def _interrupted(signum, epoch, tp, path):
    """The Interrupted error for a signal, with the shell's exit code for it (130 / 143)."""
    e = Interrupted(f"stopped by {signal.Signals(signum).name} in epoch {epoch} after {tp.n_chunks} "
                    f"chunk(s); saved {path}: continue with --load {path}")
    e.exit_code = 128 + signum
    return e
