"""The sampler's step weights in fewer bytes (srnn.precision says why), and the choice of format."""
import functools
import time

import numpy as np

from . import engine

E = engine.load()
from keras import ops  # noqa: E402  (after the engine has loaded its framework quietly)

INT8_MAX = 127.0  # symmetric int8: -127..127, one scale per column


class Packed:
    """A (n, m) matrix kept in fewer bytes: bfloat16, or int8 with a float32 scale per column.
    `x @ packed` widens the weights to float32 as it reads them, so only the weights are rounded:
    the activations and the sums stay float32."""

    def __init__(self, w, precision):
        self.precision, self.shape = precision, w.shape
        if precision == "bfloat16":
            self.data, self.scale = ops.cast(w, "bfloat16"), None
        elif precision == "int8":
            # symmetric per output column: each column's largest weight maps to +-127
            peak = ops.max(ops.abs(w), axis=0)
            self.scale = ops.where(peak > 0, peak / INT8_MAX, ops.ones_like(peak))
            self.data = ops.cast(ops.clip(ops.round(w / self.scale), -INT8_MAX, INT8_MAX), "int8")
        else:
            raise ValueError(f"cannot pack weights as {precision}")

    def matmul(self, x):
        y = ops.matmul(x, ops.cast(self.data, "float32"))
        return y if self.scale is None else y * self.scale

    def unpacked(self):
        w = ops.cast(self.data, "float32")
        return w if self.scale is None else w * self.scale


def pack(w, precision):
    """A step weight matrix in the sampler's `precision` (float32: unchanged)."""
    return w if precision == "float32" else Packed(w, precision)


def matmul(x, w):
    """x @ w for a plain or a packed matrix."""
    return w.matmul(x) if isinstance(w, Packed) else ops.matmul(x, w)


# ---- choosing the sampler's precision

# Below this many bytes of float32 step weights the weights stay in the CPU's caches and a step is
# bound by latency, not by reading them: fewer bytes cannot help (bench/sample_speed.py shows the
# dim-32 to dim-1024 rows).
AUTO_MIN_BYTES = 8 << 20
# A reduced format must be this much faster to be chosen: float32 is exact, and timings on shared
# machines vary by 10-20 %, so a smaller margin would let the choice (and so the audio of a seed)
# flip from run to run where the formats are close.
AUTO_MARGIN = 1.25
PROBE_STEPS = 16  # passes per timing: enough to see past the call overhead, a fraction of a second
PROBE_SHAPES = 3  # the largest shapes: they hold most of the bytes


def step_bytes(weights):
    """Bytes of float32 matrices a sampler reads per big frame: those that `pack` would shrink."""
    return sum(int(t.shape[0]) * int(t.shape[1]) * 4 for t in _matrices(weights))


def _matrices(weights):
    """The matrices of every tier's step weights (srnn.model's FrameStepWeights, SampleStepWeights)."""
    return [m for tier in weights for m in tier.matrices()]


def choose(precision, weights, streams):
    """The sampler's weight precision: `precision` unless it is `auto`; then float32 for a model whose
    step weights fit in cache, else whichever of float32, bfloat16 and int8 multiplies this model's
    matrices fastest here (measured once per process and shape: `probe`)."""
    if precision != "auto":
        return precision
    if step_bytes(weights) < AUTO_MIN_BYTES:
        return "float32"
    shapes = sorted({tuple(int(n) for n in m.shape) for m in _matrices(weights)}, key=lambda s: s[0] * s[1])
    times = probe(tuple(shapes[-PROBE_SHAPES:]), streams)
    return min(times, key=times.get)


@functools.lru_cache(maxsize=None)
def probe(shapes, streams):
    """Seconds per pass of `streams` activation rows through one matrix of each shape, for each
    format, in an XLA-compiled loop like the sampler's (each pass depends on the last, so it cannot
    be hoisted). The reduced formats' times are reported AUTO_MARGIN times longer: float32 keeps
    everything but a clear gain."""
    times = {}
    for precision in ("float32", "bfloat16", "int8"):
        rng = np.random.default_rng(1)
        mats = [pack(ops.convert_to_tensor(rng.normal(size=s).astype(np.float32) * 0.02), precision) for s in shapes]

        def one_pass(x):
            acc = ops.zeros_like(x[:, :1])
            for m in mats:
                acc = acc + ops.sum(matmul(x[:, :m.shape[0]], m), axis=1, keepdims=True)
            return x + 1e-6 * ops.tanh(acc)  # the next pass depends on this one

        run = E.function(lambda x: E.repeat(one_pass, PROBE_STEPS, x), xla=True)
        x = ops.convert_to_tensor(rng.normal(size=(streams, max(s[0] for s in shapes))).astype(np.float32))
        np.asarray(run(x))  # compile
        best = float("inf")
        for _ in range(2):
            t = time.perf_counter()
            np.asarray(run(x))
            best = min(best, time.perf_counter() - t)
        times[precision] = best * (1.0 if precision == "float32" else AUTO_MARGIN)
    return times
