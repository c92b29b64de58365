"""Why sampling runs at the speed it does: the profile behind the README's two unmet targets.

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
from srnn.model import SampleRNN  # noqa: E402
from srnn.sample import inverse_cdf_pick  # noqa: E402

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


def weight_bytes_per_sample(cfg):
    """Weights the sampler's loop reads per generated sample (float32), with its fused kernels:
    the sample tier every sample, the mid tier every `frame` samples, the slow tier every
    `big_frame` samples (srnn/sample.py, Sampler._loop)."""
    D, S, q, fr, bf, mps = cfg.dim, cfg.slowdim, cfg.q_levels, cfg.frame, cfg.big_frame, cfg.mids_per_slow
    sample = fr * D + D * D + D * q  # one lookup row per context sample (through h1), h2, output
    mid = fr * 3 * D + D * 3 * D + D * fr * D  # input (fused), recurrent kernel, output (fused with h1)
    slow = bf * 3 * S + S * 3 * S + S * mps * D + D * 3 * D  # GRU, output, the mid GRU's input kernel
    return 4 * (sample + mid / fr + slow / bf)


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
    need = weight_bytes_per_sample(cfg)
    print(f"dim 1024, one stream: {need / 1e6:.1f} MB of weights read per generated sample; "
          f"matrix-vector bandwidth here {bandwidth / 1e9:.1f} GB/s -> at most {bandwidth / need:,.0f} samples/s")
    from srnn.sample import Sampler

    sampler = Sampler(SampleRNN(cfg))
    sampler.generate(1, 1000)
    t0 = time.perf_counter()
    sampler.generate(1, 1000, seed=1)
    rate = 1000 / (time.perf_counter() - t0)
    print(f"  the sampler: {rate:,.0f} samples/s, {rate * need / bandwidth:.0%} of that ceiling")

    m = SampleRNN(ModelConfig(slowdim=32, dim=32))
    k = m.kernels()
    (w1, b1), (w2, b2), (wo, bo) = k["h1"], k["h2"], k["out"]

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
