"""What happens after each epoch of training, as Keras callbacks (the Keras guide's pattern for
custom loops: a `keras.callbacks.CallbackList` whose `on_train_begin`, `on_epoch_end(epoch, logs)`
and `on_train_end` the loop in srnn.training calls).

Each callback is given the run as `trainer` (srnn.training.Trainer); what a callback reads of it:
`stop_training` (set to stop after this epoch, as on a Keras model), `history`, `best` and
`best_weights` (the best epoch so far and its weights), `model` (the SampleRNN), `use_best()`,
`last_saved`. The epoch's numbers come in `logs`: train_bits,
valid_bits, seconds, samples_per_s, learning_rate, best, improved, and valid_bits/LABEL for a
conditioned model (Keras turns every value into a float).

The order of the list is the order of the work after an epoch: stop or not, the best checkpoint,
costs.png, the periodic checkpoint, the audition (after the epoch's checkpoints: a side job never
costs the epoch), the epoch's TensorBoard scalars (so within an epoch the event files hold the
clips before the scalars, and a failed write's warning comes after the audition line); at the end:
why training stopped, the test loss, the event files closed, the export.
"""
import os
import time

from . import engine
from .errors import first_line, one_line
from .plots import plot_costs
from .watch import describe_clips

engine.module()  # the framework, quietly, before Keras
import keras  # noqa: E402


class EarlyStop(keras.callbacks.Callback):
    """--patience (epochs without a better validation loss) and --max-minutes (of training, from
    the start of this run): asks the loop to stop after the epoch, and says why at the end."""

    def __init__(self, patience, max_minutes, nepochs, log=print, clock=time.time):
        super().__init__()
        self.patience, self.max_minutes, self.nepochs, self.log, self.clock = patience, max_minutes, nepochs, log, clock
        self.started, self.message = None, None

    def on_train_begin(self, logs=None):
        self.started = self.clock()

    def on_epoch_end(self, epoch, logs=None):
        best = int(logs["best"])
        stale = epoch - best
        patience_over = self.patience > 0 and stale >= self.patience
        time_over = self.max_minutes is not None and self.clock() - self.started >= 60 * self.max_minutes
        if patience_over:
            self.message = (f"no better validation loss for {stale} epoch(s) (--patience {self.patience}): "
                            f"stopping; the best epoch is {best}")
        elif time_over and epoch < self.nepochs - 1:
            self.message = (f"{self.max_minutes:g} minute(s) of training are over (--max-minutes): stopping; "
                            f"the best epoch is {best}")
        if patience_over or time_over:
            self.trainer.stop_training = True

    def on_train_end(self, logs=None):
        if self.message:
            self.log(self.message)


class BestCheckpoint(keras.callbacks.Callback):
    """EXP_..._best.h5 whenever the validation loss is the lowest so far."""

    def __init__(self, save, log=print):
        super().__init__()
        self.save, self.log = save, log

    def on_epoch_end(self, epoch, logs=None):
        if logs["improved"]:
            self.log(f"best so far: saved {self.save('best', epoch)}")


class PeriodicCheckpoint(keras.callbacks.Callback):
    """EXP_..._eN.h5 every --svepoch epochs, at the last epoch and when training stops early."""

    def __init__(self, save, svepoch, nepochs, log=print):
        super().__init__()
        self.save, self.svepoch, self.nepochs, self.log = save, svepoch, nepochs, log

    def on_epoch_end(self, epoch, logs=None):
        # The original saved when epoch % svepoch == 0 (so after the first epoch too) and at the end.
        if (self.trainer.stop_training or epoch == self.nepochs - 1
                or (self.svepoch > 0 and epoch % self.svepoch == 0)):
            self.trainer.last_saved = self.save(epoch, epoch)  # the NaN message names it
            self.log(f"saved {self.trainer.last_saved}")


class CostsPlot(keras.callbacks.Callback):
    """costs.png: the training and validation curves, the best epoch starred."""

    def __init__(self, path):
        super().__init__()
        self.path = path

    def on_epoch_end(self, epoch, logs=None):
        history = self.trainer.history
        plot_costs(self.path, history["train_bits"], history["valid_bits"], int(logs["best"]))


class Audition(keras.callbacks.Callback):
    """--audition N: every N epochs `make_clips(model, epoch)` (watch.audition), a line in the log
    and the clips in TensorBoard; any failure of it (a file in the place of EXP_samples, a full
    disk) is a warning: training goes on."""

    def __init__(self, make_clips, every, board, log=print):
        super().__init__()
        self.make_clips, self.every, self.board, self.log = make_clips, every, board, log

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            return
        model = self.trainer.model
        try:
            clips = self.make_clips(model, epoch)
        except Exception as e:  # noqa: BLE001  (whatever it is, it must not end the training)
            self.log(f"warning: the audition of epoch {epoch} failed ({one_line(first_line(e))}): training goes on")
            return
        self.log(f"Epoch {epoch} {describe_clips(clips)}")
        self.board.clips(epoch, clips, model.cfg.sample_rate)


class Events(keras.callbacks.Callback):
    """TensorBoard event files (watch.Board, a no-op without --tensorboard): every step's loss,
    the epoch's scalars, the test bits; closed at the end."""

    EPOCH = ("train_bits", "valid_bits", "seconds", "samples_per_s", "learning_rate")

    def __init__(self, board, labels=()):
        super().__init__()
        self.board, self.labels = board, labels or ()

    def on_train_batch_end(self, batch, logs=None):
        self.board.scalars(int(logs["iteration"]), **{"train/loss_bits": logs["loss"]})

    def on_epoch_end(self, epoch, logs=None):
        per_label = {f"epoch/valid_bits/{k}": logs[f"valid_bits/{k}"] for k in self.labels
                     if f"valid_bits/{k}" in logs}
        self.board.scalars(epoch, **{f"epoch/{k}": logs[k] for k in self.EPOCH}, **per_label)
        self.board.flush()

    def on_train_end(self, logs=None):
        history = self.trainer.history
        if "test_bits" in history:
            per_label = {f"test/bits/{k}": v for k, v in zip(self.labels, history.get("test_label_bits", []))
                         if v == v}  # the labels the test split saw (the others are NaN)
            self.board.scalars(self.trainer.best, **{"test/bits": history["test_bits"], **per_label})
        self.board.close()


class TestLoss(keras.callbacks.Callback):
    """The test split's loss with the best epoch's weights (from memory, or from `best_path` when
    the best epoch was before this run), in the log and the history."""

    __test__ = False  # not a pytest class

    def __init__(self, evaluate, n_parts, best_path, load_weights, labels=(), log=print):
        super().__init__()
        self.evaluate, self.n_parts, self.best_path, self.load_weights = evaluate, n_parts, best_path, load_weights
        self.labels, self.log = labels or (), log

    def on_train_end(self, logs=None):
        trainer = self.trainer
        if trainer.best is not None and trainer.best_weights is None:
            # the best epoch was before this run: its file holds it, if it is where training writes
            if os.path.exists(self.best_path):
                trainer.best_weights = self.load_weights(self.best_path)
            else:
                self.log(f"note: no test loss: the best epoch ({trainer.best}) was before this run and "
                         f"{self.best_path} is missing")
        if not trainer.use_best():
            return
        tested = self.evaluate()
        trainer.history["test_bits"] = test_bits = tested.bits
        self.log(f"Test loss in bits {test_bits:.5f} (best model, epoch {trainer.best}, {self.n_parts} part(s))")
        per_label = tested.label_bits(self.labels)
        if per_label:
            self.log(f"Test loss per label: {per_label_line(per_label)}")
            trainer.history["test_label_bits"] = [per_label.get(k, float("nan")) for k in self.labels]


class Export(keras.callbacks.Callback):
    """--export: the best epoch's model (the last epoch's when its weights are not at hand), as a
    SavedModel, after the event files are closed."""

    def __init__(self, export, log=print):
        super().__init__()
        self.export, self.log = export, log

    def on_train_end(self, logs=None):
        trainer = self.trainer
        best = trainer.use_best()
        which = f"the best epoch ({trainer.best})" if best else "the last epoch"
        self.log(f"exported {which} to {self.export(trainer.model)}")


def per_label_line(bits):
    return ", ".join(f"{label} {b:.5f}" for label, b in bits.items())
