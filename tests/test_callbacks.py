"""The training callbacks one at a time, on fake epochs: no model, no training."""
from types import SimpleNamespace

import numpy as np

from srnn.callbacks import (Audition, BestCheckpoint, CostsPlot, EarlyStop, Events, Export, PeriodicCheckpoint,
                            TestLoss)


def trainer(**kw):
    """A stand-in for srnn.training.Trainer, as callbacks see it (their `trainer`)."""
    return SimpleNamespace(**{"stop_training": False, "last_saved": None, "best": None, "best_weights": None,
                              "history": {"train_bits": [], "valid_bits": []}, **kw})


def attach(callback, **kw):
    callback.trainer = trainer(**kw)
    return callback


def run(callback, valid, stop_when=None):
    """Feed `valid` losses as epochs (best tracked as the Trainer does); the epochs run."""
    t = callback.trainer
    callback.on_train_begin()
    ran = []
    for epoch, bits in enumerate(valid):
        improved = t.best is None or bits < valid[t.best]
        t.best = epoch if improved else t.best
        callback.on_epoch_end(epoch, {"valid_bits": bits, "best": float(t.best), "improved": float(improved)})
        ran.append(epoch)
        if t.stop_training:
            break
    callback.on_train_end()
    return ran


def test_early_stop_patience():
    lines = []
    stop = attach(EarlyStop(patience=2, max_minutes=None, nepochs=10, log=lines.append))
    assert run(stop, [3.0, 2.0, 2.5, 2.1, 1.0]) == [0, 1, 2, 3]
    assert lines == ["no better validation loss for 2 epoch(s) (--patience 2): stopping; the best epoch is 1"]
    lines.clear()
    keep = attach(EarlyStop(patience=0, max_minutes=None, nepochs=10, log=lines.append))
    assert run(keep, [1.0, 2.0, 3.0, 4.0]) == [0, 1, 2, 3] and lines == []  # 0: no patience rule


def test_early_stop_time():
    now = [0.0]

    def clock():
        now[0] += 50.0  # each reading 50 s later
        return now[0]
    lines = []
    stop = attach(EarlyStop(patience=0, max_minutes=2, nepochs=10, log=lines.append, clock=clock))
    assert run(stop, [5.0, 4.0, 3.0, 2.0, 1.0]) == [0, 1, 2]  # started at 50 s; 150 s >= 120 s after epoch 2
    assert lines == ["2 minute(s) of training are over (--max-minutes): stopping; the best epoch is 2"]
    lines.clear()
    now[0] = 0.0
    last = attach(EarlyStop(patience=0, max_minutes=1, nepochs=2, log=lines.append, clock=clock))
    assert run(last, [5.0, 4.0]) == [0, 1] and lines == []  # over (100 s) at the last epoch: nothing to say


def fake_save(saved):
    def save(name, epoch, extra=None):
        saved.append((name, epoch))
        return f"ckpt_{name}.h5"
    return save


def test_checkpoints_best_periodic_and_last():
    saved, lines = [], []
    best = attach(BestCheckpoint(fake_save(saved), log=lines.append))
    run(best, [3.0, 2.0, 2.5, 1.0])
    assert saved == [("best", 0), ("best", 1), ("best", 3)]
    assert lines == ["best so far: saved ckpt_best.h5"] * 3
    saved.clear()
    periodic = attach(PeriodicCheckpoint(fake_save(saved), svepoch=3, nepochs=5, log=lines.append))
    run(periodic, [1.0] * 5)
    assert saved == [(0, 0), (3, 3), (4, 4)]  # epoch % svepoch == 0, and the last
    assert periodic.trainer.last_saved == "ckpt_4.h5"
    saved.clear()
    never = attach(PeriodicCheckpoint(fake_save(saved), svepoch=0, nepochs=5))
    run(never, [1.0] * 5)
    assert saved == [(4, 4)]


def test_a_checkpoint_when_training_stops_early():
    """EarlyStop before PeriodicCheckpoint: the epoch it stops at is saved."""
    from keras.callbacks import CallbackList

    saved = []
    both = [attach(EarlyStop(patience=1, max_minutes=None, nepochs=10, log=lambda s: None)),
            PeriodicCheckpoint(fake_save(saved), svepoch=0, nepochs=10, log=lambda s: None)]
    both[1].trainer = both[0].trainer  # one run
    callbacks = CallbackList(both)
    callbacks.trainer = both[0].trainer
    assert run(callbacks, [1.0, 2.0, 3.0]) == [0, 1]
    assert saved == [(1, 1)]


def test_costs_plot_written(tmp_path):
    path = tmp_path / "costs.png"
    plot = attach(CostsPlot(str(path)), history={"train_bits": [4.0, 3.0], "valid_bits": [4.5, 3.5]})
    plot.on_epoch_end(1, {"best": 1.0})
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


class FakeBoard:
    def __init__(self):
        self.calls = []

    def scalars(self, step, **values):
        self.calls.append(("scalars", step, values))

    def clips(self, step, clips, rate):
        self.calls.append(("clips", step, len(clips)))

    def flush(self):
        self.calls.append(("flush",))

    def close(self):
        self.calls.append(("close",))


def test_audition_every_n_epochs_and_a_failure_is_a_warning():
    board, lines, asked = FakeBoard(), [], []

    def make_clips(model, epoch):
        asked.append(epoch)
        if epoch == 3:
            raise OSError(28, "No space left on device")
        return []
    model = SimpleNamespace(cfg=SimpleNamespace(sample_rate=16000))
    audition = attach(Audition(make_clips, 2, board, lines.append), model=model)
    for epoch in range(4):
        audition.on_epoch_end(epoch, {})
    assert asked == [1, 3]
    assert lines[0] == "Epoch 1 audition " and board.calls == [("clips", 1, 0)]
    assert lines[1].startswith("warning: the audition of epoch 3 failed (") and "No space left" in lines[1]


def test_events_epoch_scalars_and_test_bits():
    board = FakeBoard()
    events = attach(Events(board, ("a", "b")), best=1,
                    history={"test_bits": 2.5, "test_label_bits": [2.0, float("nan")]})
    events.on_train_batch_end(0, {"loss": 3.0, "iteration": 7.0})
    events.on_epoch_end(1, {"train_bits": 3.0, "valid_bits": 3.5, "seconds": 1.0, "samples_per_s": 9.0,
                            "learning_rate": 1e-3, "valid_bits/a": 3.4, "best": 1.0, "improved": 1.0})
    events.on_train_end()
    assert board.calls[0] == ("scalars", 7, {"train/loss_bits": 3.0})
    assert board.calls[1] == ("scalars", 1, {"epoch/train_bits": 3.0, "epoch/valid_bits": 3.5, "epoch/seconds": 1.0,
                                             "epoch/samples_per_s": 9.0, "epoch/learning_rate": 1e-3,
                                             "epoch/valid_bits/a": 3.4})
    assert board.calls[2:] == [("flush",), ("scalars", 1, {"test/bits": 2.5, "test/bits/a": 2.0}), ("close",)]


def test_test_loss_takes_the_best_weights_from_the_file_and_export_says_which(tmp_path):
    lines, used = [], []
    best_path = tmp_path / "best.h5"
    best_path.write_bytes(b"")

    def use_best():
        used.append(t.best_weights)
        return t.best_weights is not None
    t = trainer(best=2, use_best=use_best, model="the model")
    passed = SimpleNamespace(bits=1.25, label_bits=lambda labels: {})
    test = TestLoss(lambda: passed, 3, str(best_path), lambda path: [np.zeros(1)], log=lines.append)
    test.trainer = t
    test.on_train_end()
    assert t.history["test_bits"] == 1.25 and len(used) == 1 and used[0] is not None
    assert lines == ["Test loss in bits 1.25000 (best model, epoch 2, 3 part(s))"]
    export = Export(lambda model: f"exported/{model}", log=lines.append)
    export.trainer = t
    export.on_train_end()
    assert lines[-1] == "exported the best epoch (2) to exported/the model"

    lines.clear()
    t2 = trainer(best=2, use_best=lambda: False, model="m")
    test = TestLoss(lambda: passed, 3, str(tmp_path / "missing.h5"), None, log=lines.append)
    test.trainer = t2
    test.on_train_end()
    assert "test_bits" not in t2.history
    assert lines == [f"note: no test loss: the best epoch (2) was before this run and {tmp_path / 'missing.h5'} "
                     f"is missing"]
