"""The sampler's step weights in fewer bytes (srnn.precision says why): fewer bytes per weight
(bfloat16, int8), fewer weights (the block-sparse layout of a pruned model, srnn.sparse), and the
choice of format."""
import functools
import time
import typing

import numpy as np

from . import engine

E = engine.module()
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


class SparseMatrix:
    """A block-sparse (n, m) matrix in the balanced layout (srnn.sparse): each block column (`rows`
    outputs) keeps `keep` blocks of `cols` inputs, its largest ones, which for a pruned model are
    all its nonzero blocks (`keep` is the most any column has, so nothing nonzero is dropped; a
    column with fewer keeps some zero blocks). x @ w gathers each block column's inputs and
    multiplies them in one dense contraction of fixed shape: `keep` / (n / cols) of the dense
    product's weights, read in `precision` (float32, bfloat16, or int8 with a scale per output).
    The sums run over the kept blocks in another order than the dense product's: the same value
    up to float rounding."""

    def __init__(self, w, keep, block, precision="float32"):
        rows, cols = block
        n, m = w.shape
        self.shape, self.keep, self.block, self.precision = (n, m), keep, block, precision
        # (n/cols, cols, m/rows, rows) -> each block's squared norm (n/cols, m/rows)
        blocks = ops.reshape(w, (n // cols, cols, m // rows, rows))
        scores = ops.transpose(ops.sum(ops.square(blocks), axis=(1, 3)))  # (m/rows, n/cols)
        _, idx = ops.top_k(scores, keep)  # (m/rows, keep): each block column's kept input blocks
        self.idx = ops.cast(idx, "int32")
        # values (m/rows, keep * cols, rows): block column j's kept blocks, input-major, so that the
        # product is one batched matmul (bench/sparse_layouts.py: as fast as any form on TensorFlow,
        # and 10-15x faster than an einsum on JAX, whose einsum re-lays the weights out every pass)
        by_column = ops.transpose(blocks, (2, 0, 1, 3))  # (m/rows, n/cols, cols, rows)
        vals = ops.take_along_axis(by_column, self.idx[:, :, None, None], axis=1)
        vals = ops.reshape(vals, (m // rows, keep * cols, rows))
        self.scale = None
        if precision == "int8":  # symmetric per output, as Packed
            peak = ops.max(ops.abs(vals), axis=1, keepdims=True)
            self.scale = ops.where(peak > 0, peak / INT8_MAX, ops.ones_like(peak))  # (m/rows, 1, rows)
            self.vals = ops.cast(ops.clip(ops.round(vals / self.scale), -INT8_MAX, INT8_MAX), "int8")
        elif precision == "bfloat16":
            self.vals = ops.cast(vals, "bfloat16")
        else:
            self.vals = vals

    def matmul(self, x):
        rows, cols = self.block
        n, m = self.shape
        B = x.shape[0] if x.shape[0] is not None else ops.shape(x)[0]
        xb = ops.reshape(x, (B, n // cols, cols))
        g = ops.take(xb, self.idx, axis=1)  # (B, m/rows, keep, cols): each block column's inputs
        g = ops.transpose(ops.reshape(g, (B, m // rows, self.keep * cols)), (1, 0, 2))
        y = ops.matmul(g, ops.cast(self.vals, "float32"))  # (m/rows, B, rows)
        if self.scale is not None:
            y = y * self.scale
        return ops.reshape(ops.transpose(y, (1, 0, 2)), (B, m))

    def bytes(self):
        per = {"float32": 4, "bfloat16": 2, "int8": 1}[self.precision]
        return self.shape[1] // self.block[0] * self.keep * (self.block[0] * self.block[1] * per + 4)


class StepFormat(typing.NamedTuple):
    """How the sampler keeps its step weights: `precision` (float32, bfloat16, int8) for every
    matrix, and the block-sparse layout for those named in `sparse` ((v name, blocks kept per
    block column), srnn.sparse.mask_suffixes' names) with `block` (rows, cols). Hashable: it
    selects a compilation of the sampler."""
    precision: str = "float32"
    sparse: tuple = ()
    block: tuple = ()

    def is_sparse(self, name):
        return any(n == name for n, _ in self.sparse)

    def pack(self, w, name=None):
        """The matrix `w` (the weight named `name`) in this format."""
        for n, keep in self.sparse:
            if n == name:
                return SparseMatrix(w, keep, self.block, self.precision)
        return pack(w, self.precision)

    def describe(self):
        if not self.sparse:
            return self.precision
        return f"{self.precision}, {len(self.sparse)} matrices block-sparse ({'x'.join(map(str, self.block))} blocks)"


def step_format(fmt):
    """A StepFormat from a StepFormat or a precision's name."""
    return fmt if isinstance(fmt, StepFormat) else StepFormat(fmt)


def matmul(x, w):
    """x @ w for a plain, a packed or a block-sparse matrix."""
    return w.matmul(x) if isinstance(w, (Packed, SparseMatrix)) else ops.matmul(x, w)


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
    """Bytes of float32 matrices a sampler reads per big frame: those that `pack` would shrink (of a
    block-sparse one, its kept blocks)."""
    return sum(t.bytes() if isinstance(t, SparseMatrix) else int(t.shape[0]) * int(t.shape[1]) * 4
               for t in _matrices(weights))


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
