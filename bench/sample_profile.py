"""Why sampling runs at the speed it does: the profile behind the two unmet sampling goals
(docs/performance.md).

    python bench/sample_profile.py

1. dim 1024, one stream, is memory-bound: it prints the bytes of weights one generated sample
   reads, this machine's matrix-vector bandwidth beyond the caches, and the ceiling that follows.
2. dim 32: per-step cost of the sample tier's pieces for 1 and 16 streams, showing that the work
   (not a per-step overhead) grows with the number of streams.
"""
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from common import describe_machine, tf  # noqa: E402

from srnn.config import ModelConfig  # noqa: E402
from srnn.generation import generate_levels  # noqa: E402
from srnn.model import SampleRNN  # noqa: E402
from srnn.rule import inverse_cdf_pick  # noqa: E402

STEPS = 2000


def loop_time(fn, state, steps=STEPS):
    """Seconds per iteration of fn inside one compiled while-loop (no per-call overhead)."""
    @tf.function(jit_compile=True, reduce_retracing=True)
    def run(s):
        return tf.while_loop(lambda i, s: i < steps, lambda i, s: (i + 1, fn(s)), (0, s))[1]
    run(state).numpy()
    t0 = time.perf_counter()
    run(state).numpy()
    return (time.perf_counter() - t0) / steps


def weight_bytes_per_sample(model):
    """Weights the sampler's loop reads per generated sample (float32), from the fused step weights
    themselves (SampleRNN.step_weights): each frame tier's once per frame of its size, the sample
    MLP's every sample (one table row per context sample)."""
    size = lambda t: int(tf.size(t))  # noqa: E731
    weights = model.step_weights()
    total = 0.0
    for tier, w in zip(model.frame_tiers, weights):
        n = sum(size(wh) + size(bh) + (size(wx) + size(bx) if i or tier.top else 0)
                for i, (wx, bx, wh, bh) in enumerate(w.rnn))
        n += 0 if tier.top else size(w.in_wx) + size(w.in_bx)
        n += size(w.out_w) + size(w.out_b) + (0 if w.below.fold else size(w.below.kernel))
        total += n / tier.frame
    w = weights[-1]
    total += len(w.tables) * model.cfg.dim + sum(size(t) for pair in (w.h2, w.out) for t in pair)
    return 4 * total


def main():
    describe_machine()
    cfg = ModelConfig(slowdim=1024, dim=1024)
    # 8 matrices, 100 MB: more than the caches hold, as the model's ~71 MB of weights are
    ws = [tf.random.normal((1024, 3072)) for _ in range(8)]

    def chain(v):
        for w in ws:
            v = tf.tanh(tf.matmul(v, w))[:, :1024]
        return v

    per = loop_time(chain, tf.random.normal((1, 1024)), steps=200)
    bandwidth = len(ws) * 1024 * 3072 * 4 / per
    model = SampleRNN(cfg)
    need = weight_bytes_per_sample(model)
    print(f"dim 1024, one stream: {need / 1e6:.1f} MB of weights read per generated sample; "
          f"matrix-vector bandwidth here {bandwidth / 1e9:.1f} GB/s -> at most {bandwidth / need:,.0f} samples/s")
    sampler = model.sampler()
    generate_levels(sampler, 1, 1000)
    t0 = time.perf_counter()
    generate_levels(sampler, 1, 1000, seed=1)
    rate = 1000 / (time.perf_counter() - t0)
    print(f"  the sampler: {rate:,.0f} samples/s, {rate * need / bandwidth:.0%} of that ceiling")

    m = SampleRNN(ModelConfig(slowdim=32, dim=32)).sample_tier
    (w1, b1), (w2, b2), (wo, bo) = [(layer.kernel(), layer.b) for layer in (m.h1, m.h2, m.out)]

    def mlp(h):
        h = tf.nn.relu(tf.matmul(h, w1) + b1)
        return tf.matmul(tf.nn.relu(tf.matmul(h, w2) + b2), wo) + bo

    pieces = [
        ("MLP (dim 32 -> 256 logits)", lambda h: h + 1e-3 * mlp(h)[:, :32]),
        ("+ log_softmax", lambda h: h + 1e-3 * tf.nn.log_softmax(mlp(h))[:, :32]),
        ("+ pick (inverse CDF)", lambda h: h + 1e-3 * tf.cast(
            inverse_cdf_pick(tf.exp(tf.nn.log_softmax(mlp(h))), tf.fill([h.shape[0]], 0.5)), tf.float32)[:, None]),
    ]
    print(f"dim 32, sample tier per step (one compiled loop of {STEPS} steps):")
    print(f"  {'piece':<28} {'1 stream':>10} {'16 streams':>11} {'ratio':>6}")
    for name, fn in pieces:
        one = loop_time(fn, tf.random.normal((1, 32))) * 1e6
        sixteen = loop_time(fn, tf.random.normal((16, 32))) * 1e6
        print(f"  {name:<28} {one:>8.2f}us {sixteen:>9.2f}us {sixteen / one:>6.1f}")


if __name__ == "__main__":
    main()
