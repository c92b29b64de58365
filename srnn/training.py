"""Truncated-BPTT training: compiled steps, the epoch loop, checkpoints and costs.png."""
import dataclasses
import math
import os
import signal
import sys
import time

import numpy as np

from . import checkpoint, engine, names, sparse
from .distribute import is_chief
from .errors import SrnnError
from .options import LEARNING_RATE, TrainOptions, prepare  # noqa: F401  (TrainOptions is part of this module's API)
from .precision import training_note
from .watch import Board, audition

E = engine.module()
import keras  # noqa: E402  (after the engine has loaded its framework quietly)

from .callbacks import (Audition, BestCheckpoint, CostsPlot, EarlyStop, Events, Export,  # noqa: E402
                        PeriodicCheckpoint, TestLoss, per_label_line)

Steps = E.Steps  # one device's steps, this engine's (the tests and benches build them directly)


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
    at_batch: tuple = (0.0, 0.0, 0)  # (total, count, n_chunks) when this batch began

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
        arrays = None if self.states is None else steps.states_to_numpy(self.states)
        if arrays is None and self.chunk:  # no states to carry (a cluster's): the batch is redone
            total, count, n_chunks = self.at_batch  # from its start, its chunks not yet counted
            return {"next_batch": self.batch, "next_chunk": 0, "partial_total": total, "partial_count": count,
                    "partial_chunks": n_chunks}
        state = {"next_batch": self.batch, "next_chunk": self.chunk, "partial_total": self.total,
                 "partial_count": self.count, "partial_chunks": self.n_chunks}
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


def run_pass(steps, feeder, batches, train, pos=None, bar=None, stop=None, prefetch=True, on_step=None,
             before_step=None):
    """One pass over `batches` (training or evaluation), from `pos` on; updates and returns `pos`.

    The loss is the mean in bits over the pass's real samples. A signal seen by `stop` raises
    _Stop after the current step, with `pos` at the next chunk, so the pass can be resumed exactly.
    `on_step(loss)` is called after every step (TensorBoard's per-step loss), `before_step()`
    before each (the pruning, srnn.prune).
    """
    pos = pos or Pass()
    step = steps.train_step if train else steps.eval_step
    # a cluster's processes stop after the same step (srnn.engine.jax.ClusterSteps): the signal
    # one of them got goes into each step, and the step says whether any got one
    together = steps.together
    for b, seqs in feeder.loaded(batches, start=pos.batch, prefetch=prefetch):
        for c, chunk in enumerate(feeder.batch_chunks(seqs, batches[b])):
            if b == pos.batch and c < pos.chunk:
                continue  # done before an interruption
            if chunk.reset:
                pos.states = steps.zero_states(chunk.x.shape[0])  # ignored: reset uses h0
                pos.at_batch = (pos.total, pos.count, pos.n_chunks)
            if before_step is not None:
                before_step()
            if together:
                steps.stopping = stop is not None and stop.signum is not None
            out = step(chunk.x, chunk.mask, E.scalar(chunk.reset), pos.states, chunk.mix)
            loss, pos.states = float(out[0]), out[1]
            if not train and chunk.mix.shape[1]:
                counts = chunk.label_counts  # real samples per label (a cluster's: the whole batch's)
                if counts is None:
                    counts = chunk.mix.T.astype(np.float64) @ chunk.mask.sum(axis=1)
                pos.add_labels(np.asarray(out[2], np.float64), counts)
            if not math.isfinite(loss):
                raise NonFiniteLoss(f"the {'training' if train else 'valid'} loss became {loss} "
                                    f"at chunk {pos.n_chunks}")
            n = float(chunk.mask.sum()) if chunk.count is None else chunk.count
            pos.total, pos.count, pos.n_chunks = pos.total + loss * n, pos.count + n, pos.n_chunks + 1
            pos.batch, pos.chunk = b, c + 1
            if bar is not None:
                bar.update(pos.n_chunks, values=[("loss in bits", pos.bits)])  # running epoch mean
            if on_step is not None:
                on_step(loss)
            if stop is not None and (steps.stop_after() if together else stop.signum is not None):
                raise _Stop
        pos.batch, pos.chunk = b + 1, 0
    return pos


def train(cfg, opts, log=print, splits=None, ckpt=None, cluster=None):
    """Train a model of `cfg` on `blizzard/{exp}_parts`; returns the history. `ckpt`: opts.load's
    checkpoint, if the caller has read it already; `cluster`: the processes of a multi-worker run
    on an engine whose processes meet through srnn.cluster, met and started already."""
    trainer = Trainer(cfg, opts, log, splits, ckpt, cluster)
    if trainer.start >= trainer.opts.nepochs:
        trainer.log(f"{opts.load} has already been trained for {trainer.start} epoch(s): raise --nepochs to continue")
        return trainer.history
    return trainer.fit(trainer.callbacks())


class Trainer:
    """One training run: the model and its steps, the history, the best epoch and its weights, where
    a resumed run starts; `fit` runs the epochs and drives the callbacks (srnn.callbacks), which are
    given the Trainer by name."""

    def __init__(self, cfg, opts, log=print, splits=None, ckpt=None, cluster=None):
        opts = opts.with_defaults()  # (srnn.fit has filled in the checkpoint's; here, the rest)
        self.cfg, self.opts, self.cluster = cfg, opts, cluster
        self.splits = splits or prepare(cfg, opts)
        if ckpt is None and opts.load:
            ckpt = checkpoint.load(opts.load)
        self.chief = cluster.chief if cluster is not None else is_chief(opts.distribute)
        self.log = log if self.chief else lambda *a, **k: None  # one voice per cluster: the chief's
        lr = LEARNING_RATE if opts.learning_rate is None else opts.learning_rate
        self.model, self.steps, self.xla = E.training_steps(cfg, opts, lr, cluster, self.log)
        self.history = {"train_bits": [], "valid_bits": [], **({"valid_label_bits": []} if cfg.labels else {})}
        self.start, self.resume = 0, None
        self.stop_training, self.last_saved, self._best_in_model, self.board = False, None, False, None
        if ckpt is not None:
            self._load(ckpt)
        self.pruner = self._pruner(ckpt)
        self._describe()
        valid = self.history["valid_bits"]
        self.best = int(np.argmin(valid)) if valid else None
        self.best_weights = None
        # the loaded weights are the best epoch's, unless they were saved inside the next epoch
        # (an interrupted run's): then the best epoch's are in its file, as for an earlier best
        if self.best is not None and self.best == self.start - 1 and self.resume is None:
            self.best_weights = self.weights()

    def _load(self, ckpt):
        """Resume: the weights, and from a training checkpoint the optimizer, history, position in
        the epoch, loss scale and (with --learning-rate) a new rate."""
        opts, steps = self.opts, self.steps
        checkpoint.apply_weights(ckpt, self.model)
        if ckpt.train and checkpoint.apply_optimizer(ckpt, steps.optimizer):
            self.start = int(ckpt.train["epoch"]) + 1
            self.history = {k: list(ckpt.train.get(k, [])) for k in self.history}
            if "next_batch" in ckpt.train:
                self.resume = Pass.from_state(ckpt.train, steps)
            if steps.loss_scale is not None:
                steps.loss_scale.restore(ckpt.train)
            where = f", inside epoch {self.start} at chunk {self.resume.n_chunks}" if self.resume else ""
            self.log(f"resuming from {opts.load}: {self.start} epoch(s) done{where}; optimizer state restored")
            if opts.learning_rate is not None:  # the restored state holds the old rate
                steps.optimizer.learning_rate.assign(opts.learning_rate)
        else:
            self.log(f"note: {opts.load} holds weights only; training starts at epoch 0 from them")

    def _pruner(self, ckpt):
        """A sparse model's Pruner (srnn.prune) on its schedule: the checkpoint's, or a new one
        from the flags (a fresh run, a dense checkpoint to prune, a higher --sparsity), counted
        from the optimizer's step now; None for a dense model."""
        from .prune import Pruner

        cfg, opts = self.cfg, self.opts
        if not cfg.sparse_block:
            return None
        pruner = Pruner(self.model, self.steps, None, cfg.sparse_block)
        now, reached = self.steps.iterations(), pruner.reached()
        stored = sparse.Schedule.from_state(ckpt.train) if ckpt is not None and ckpt.train else None
        if opts.sparsity is None or (stored is not None and opts.sparsity == stored.target
                                     and opts.prune_start is None and opts.prune_end is None):
            # go on as the checkpoint did (a weights-only file: its masks, fixed)
            pruner.schedule = stored or sparse.Schedule(reached, now, now, reached)
        else:
            feed = self.splits.train
            run = feed.count_chunks(feed.batches(seed=[opts.seed, self.start])) * max(opts.nepochs - self.start, 1)
            start = now + sparse.default_steps(opts.prune_start, sparse.DEFAULT_START, run)
            end = now + sparse.default_steps(opts.prune_end, sparse.DEFAULT_END, run)
            if opts.prune_end is None:
                end = max(end, start)  # a --prune-start past the default end: prune at once there
            if opts.prune_start is None:
                start = min(start, end)  # an early --prune-end: start at once
            if end > sparse.MAX_STEP:  # the flags count from the checkpoint's step: the file must read back
                raise SrnnError(f"--prune-start/--prune-end: pruning would end at optimizer step {end} ({now} taken "
                                f"+ the flag's), after the last a checkpoint holds ({sparse.MAX_STEP}): give fewer "
                                f"steps")
            # (a balanced mask may overshoot its target a little: the schedule starts at the target
            # then, so that it never falls, as a checkpoint's schedule must not)
            pruner.schedule = sparse.Schedule(opts.sparsity, start, end, min(reached, opts.sparsity))
        return pruner

    def _describe(self):
        cfg, opts, log, s = self.cfg, self.opts, self.log, self.splits
        n_test = len(s.test.files) if s.test else 0
        self.model.summary(print_fn=lambda line, line_break=True: log(line))
        log(f"model: {cfg.describe()}; learning rate {self.learning_rate():g}")
        log(f"training on {len(s.train.files)} part(s), validating on {len(s.valid.files)}"
            f"{f', testing on {n_test}' if n_test else ''}; batch {opts.batchsize}, "
            f"cutlen {s.train.cutlen}, {opts.nepochs} epoch(s){', XLA' if self.xla else ''}"
            f"{'' if opts.precision == 'float32' else ', ' + opts.precision}")
        log(f"engine: {E.NAME} on {E.processors()}")
        if self.pruner is not None:
            s, (rows, cols) = self.pruner.schedule, cfg.sparse_block
            when = (f"at optimizer step {s.start} (one-shot)" if s.start == s.end else
                    f"from optimizer step {s.start} to {s.end} (cubic; masks updated every {s.every} step(s))")
            log(f"pruning: sparsity {self.pruner.reached():.4f} now, {s.target:g} {when}, in {rows}x{cols} blocks "
                f"(balanced: each {rows} outputs keep the same number of blocks)")
        note = training_note(opts.precision, E.gpus())
        if note:
            log(note)
        log(f"losses are bits per sample with {cfg.qtype} quantisation to {cfg.q_levels} levels: compare them "
            f"only with runs of the same --qtype and --q-levels")

    def learning_rate(self):
        return float(self.steps.optimizer.learning_rate.numpy())

    def weights(self):
        return [w.numpy() for _, w in self.model.named_weights()]

    def use_best(self):
        """The best epoch's weights into the model (once); False when they are not at hand."""
        if self.best_weights is None:
            return False
        if not self._best_in_model:
            for (_, w), value in zip(self.model.named_weights(), self.best_weights):
                w.assign(value)
            self._best_in_model = True
        return True

    def path(self, name):
        return os.path.join(self.opts.out_dir, names.checkpoint_name(self.opts.exp, self.cfg.dim, name))

    def save(self, name, epoch, extra=None):
        """The checkpoint EXP_..._{name}.h5 after `epoch` (with `extra`: where in the next one); its path."""
        opts, steps = self.opts, self.steps
        path = self.path(name)
        if self.chief:  # in a cluster only the chief writes; every worker holds the same weights
            checkpoint.save(path, self.model, steps.optimizer,
                            {"epoch": epoch, "seed": opts.seed, "exp": opts.exp, "precision": opts.precision,
                             "learning_rate": self.learning_rate(), **self.history,
                             **(steps.loss_scale.state() if steps.loss_scale else {}),
                             **(self.pruner.schedule.to_state() if self.pruner else {}), **(extra or {})})
        return path

    def callbacks(self):
        """This run's callbacks, in the order of the work after an epoch (srnn.callbacks)."""
        opts, cfg, log, test = self.opts, self.cfg, self.log, self.splits.test
        self.board = Board(opts.tensorboard if self.chief else None, log)  # one writer per cluster: the chief's
        out = [EarlyStop(opts.patience, opts.max_minutes, opts.nepochs, log), BestCheckpoint(self.save, log)]
        if self.chief:
            out.append(CostsPlot(os.path.join(opts.out_dir, names.COSTS)))
        out.append(PeriodicCheckpoint(self.save, opts.svepoch, opts.nepochs, log))
        if opts.audition and self.chief:  # (watch.audition looked up here, when called: tests replace it)
            out.append(Audition(lambda model, epoch: audition(model, opts.out_dir, opts.exp, epoch, opts.audition_seqs,
                                                              opts.audition_seconds, seed=opts.seed,
                                                              scaling=opts.scaling),
                                opts.audition, self.board, log))
        if test is not None and (self.chief or self.cluster is None):  # JAX's cluster: process 0, alone
            out.append(TestLoss(lambda: self.evaluate(test), len(test.files), self.path("best"),
                                lambda path: [checkpoint.load(path).weights[n] for n, _ in self.model.named_weights()],
                                cfg.labels, log))
        out.append(Events(self.board, cfg.labels))
        if opts.export and self.chief:
            from .export import export

            out.append(Export(lambda model: export(model, opts.export, opts.scaling), log))
        for callback in out:
            callback.trainer = self  # what they read and set of the run (srnn.callbacks)
        return keras.callbacks.CallbackList(out)

    def evaluate(self, feed):
        """A pass over `feed` with the model's weights as they are (the test loss)."""
        return run_pass(self.steps.evaluator(), feed, feed.batches(), False)

    def fit(self, callbacks):
        """The epochs from `start`, each followed by `callbacks.on_epoch_end`, until the last or until
        a callback sets `stop_training`; Ctrl-C or SIGTERM saves *_interrupted.h5. Returns the history."""
        on_step = None
        if self.board is not None and self.board.writer is not None:  # TensorBoard's per-step loss (Events);
            on_step = lambda loss: callbacks.on_train_batch_end(  # noqa: E731  (numbered by the optimizer)
                0, {"loss": loss, "iteration": self.steps.iterations()})
        callbacks.on_train_begin()
        with StopRequest(self.log) as stop:
            for epoch in range(self.start, self.opts.nepochs):
                callbacks.on_epoch_end(epoch, self.run_epoch(epoch, stop, on_step))
                # each process's clock (--max-minutes) may say otherwise: a cluster's process 0 decides
                self.stop_training = self.steps.agree(self.stop_training)
                if self.stop_training:
                    break
        callbacks.on_train_end()
        return self.history

    def run_epoch(self, epoch, stop, on_step=None):
        """One epoch's training and validation passes, its lines in the log and the history; the
        callbacks' logs."""
        opts, steps, log, train_feed, valid_feed = self.opts, self.steps, self.log, self.splits.train, self.splits.valid
        t0 = time.time()
        batches = train_feed.batches(seed=[opts.seed, epoch])
        log(f"Epoch {epoch}/{opts.nepochs - 1}")
        verbose = (1 if sys.stdout.isatty() else 2) if self.chief else 0  # a redirected log: a line per epoch
        bar = keras.utils.Progbar(train_feed.count_chunks(batches), verbose=verbose, unit_name="chunk",
                                  stateful_metrics=["loss in bits"])
        tp, self.resume = self.resume or Pass(), None
        check_position(tp, train_feed, batches, opts)
        count_before = tp.count
        try:
            try:
                run_pass(steps, train_feed, batches, True, tp, bar, stop, on_step=on_step,
                         before_step=self.pruner.before_step if self.pruner else None)
            finally:  # the weights as trained, in the model's variables (the JAX engine's
                steps.sync()  # steps hold them until then), for saving, auditions and tests
            train_seconds = time.time() - t0
            vp = run_pass(steps, valid_feed, valid_feed.batches(), False, stop=stop)
        except _Stop:
            path = self.save("interrupted", epoch - 1, tp.to_state(steps))
            raise _interrupted(stop.signum, epoch, tp, path, "" if self.chief else " on the chief") from None
        except NonFiniteLoss as e:
            where = f"the last good checkpoint is {self.last_saved}" if self.last_saved else "no checkpoint was written"
            raise NonFiniteLoss(f"epoch {epoch}: {e}; stopped, {where}; try a lower learning rate "
                                f"or check the data") from None
        history, valid = self.history, self.history["valid_bits"]
        history["train_bits"].append(tp.bits)
        valid.append(vp.bits)
        log(f"Epoch {epoch} training loss in bits {tp.bits:.5f} ({tp.n_chunks} chunks)")
        log(f"Epoch {epoch} valid loss in bits {vp.bits:.5f}")
        if self.pruner is not None:
            log(f"Epoch {epoch} sparsity {self.pruner.reached():.4f} (of {self.pruner.schedule.target:g}; "
                f"optimizer step {steps.iterations()})")
        per_label = vp.label_bits(self.cfg.labels)
        if per_label:
            log(f"Epoch {epoch} valid loss per label: {per_label_line(per_label)}")
            history["valid_label_bits"].append([per_label.get(k, float("nan")) for k in self.cfg.labels])
        seconds = time.time() - t0
        log(f"Epoch {epoch} took {seconds:.1f} seconds")
        improved = self.best is None or vp.bits < valid[self.best]
        if improved:
            self.best, self.best_weights = epoch, self.weights()  # for the test loss and the export
        return {"train_bits": tp.bits, "valid_bits": vp.bits, "seconds": seconds,
                "samples_per_s": (tp.count - count_before) / max(train_seconds, 1e-9),
                "learning_rate": self.learning_rate(), "best": self.best, "improved": improved,
                **{f"valid_bits/{k}": v for k, v in per_label.items()}}


def _interrupted(signum, epoch, tp, path, where=""):
    """The Interrupted error for a signal, with the shell's exit code for it (130 / 143); `signum`
    None: another process of the cluster got it."""
    why = signal.Signals(signum).name if signum else "a signal to another process of the cluster"
    e = Interrupted(f"stopped by {why} in epoch {epoch} after {tp.n_chunks} "
                    f"chunk(s); saved {path}{where}: continue with --load {path}")
    e.exit_code = 128 + (signum or signal.SIGTERM)
    return e
