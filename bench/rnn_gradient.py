"""Why the RNN gradients are written by hand: forward + backward time of one frame tier's RNN over
a chunk, the hand-written gradient (srnn.cells) against autodiff of the same scan.

    python bench/rnn_gradient.py           # GRU and LSTM, dims 256 and 1024
    python bench/rnn_gradient.py --quick

Shapes are a music model's bottom tier (--frames 16,4, cutlen 512: 128 steps) at batch 16; XLA is
used as training uses it (up to dim 512, srnn.engine.common.use_xla).
"""
import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from common import describe_machine, tf  # noqa: E402

from srnn.cells import CELLS  # noqa: E402

BATCH, STEPS = 16, 128


def autodiff_sequence(cell):
    """The same recurrence as cell.sequence, left to autodiff."""
    def sequence(xp, s, wh, bh):
        ss = tf.scan(lambda carry, xt: cell.step(xt, carry, wh, bh), tf.transpose(xp, [1, 0, 2]), initializer=s)
        units = wh.shape[0]
        return tf.transpose(ss[..., :units], [1, 0, 2]), ss[-1]
    return sequence


def timed(sequence, cell, units, seconds):
    xp = tf.random.normal((BATCH, STEPS, cell.gates * units))
    s = tf.random.normal((BATCH, cell.states * units))
    wh = tf.Variable(tf.random.normal((units, cell.gates * units)) / units ** 0.5)
    bh = tf.Variable(tf.zeros(cell.gates * units))

    @tf.function(jit_compile=units <= 512)
    def step(xp, s):
        with tf.GradientTape() as tape:
            tape.watch(xp)
            outs, last = sequence(xp, s, wh, bh)
            loss = tf.reduce_sum(outs) + tf.reduce_sum(last)
        return tape.gradient(loss, [xp, wh, bh])

    step(xp, s)[1].numpy()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or n < 3:
        step(xp, s)[1].numpy()
        n += 1
    return (time.perf_counter() - t0) / n * 1e3


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    describe_machine()
    seconds = 2.0 if args.quick else 5.0
    print(f"forward + backward of {STEPS} steps, batch {BATCH}")
    print(f"{'cell':>5} {'units':>6} {'hand-written':>13} {'autodiff':>10} {'autodiff / hand':>16}")
    for name in ("gru", "lstm"):
        cell = CELLS[name]
        for units in (256, 1024):
            hand = timed(cell.sequence, cell, units, seconds)
            auto = timed(autodiff_sequence(cell), cell, units, seconds)
            print(f"{name:>5} {units:>6} {hand:>11.1f}ms {auto:>8.1f}ms {auto / hand:>16.2f}", flush=True)


if __name__ == "__main__":
    main()
