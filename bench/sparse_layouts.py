"""Block-sparse weight layouts for the sampler's per-step product y = x @ W, on CPU through XLA.

    KERAS_BACKEND=tensorflow python bench/sparse_layouts.py    # tf.function(jit_compile=True)
    KERAS_BACKEND=jax python bench/sparse_layouts.py           # jax.jit
    python bench/sparse_layouts.py --quick                     # 64 passes, best of 2
    python bench/sparse_layouts.py --phase1-only               # the first pass alone
    python bench/sparse_layouts.py --candidates "1x32 bmm native, 1x64 einsum keras"  # phases 2-3 alone, for these

W is (n_in, n_out) float32, x is (B, n_in). The layout is "balanced blocks": W is cut into blocks
of bi inputs x bo outputs and every block-column j (bo consecutive outputs) keeps exactly
K = max(1, round(density * n_in / bi)) of its n_in / bi blocks: idx (n_out/bo, K) int32 says which
input blocks, vals (n_out/bo, K, bi, bo) float32 holds them (or a transposed order, see EXPRS).

Each figure is microseconds per pass of a compiled loop of --loops dependent passes
(x <- x0 + 1e-6 * y[:, :n_in]; tf.while_loop in tf.function(jit_compile=True), lax.fori_loop in
jax.jit), best of --reps timings after a compile call (in phase 1, one timing where the first is
over 3x dense). Weights are arguments of the compiled function (not constants), and an
expression's set-up on them (index expansion) runs once per call, outside the loop, as a sampler
would do it. "mem" is the bytes of what is stored (vals + idx).

Phases: (1) every block shape x expression at (1024, 3072), density 0.05, B = 1 and B = 16, with
Keras' ops.take; the best few with the backend's own gather too; (2) the best --top candidates of
each B over all shapes and densities, against the dense matmul (and the best sparse one at
density 1.0, for its overhead); (3) the key comparison again, to see the noise of a shared machine.
--candidates skips phase 1 and runs phases 2-3 for the given ones.

Found on 2 Xeon cores (AVX-512), both backends: bi=1 with wide bo (32, 64) and "bmm" (the gathered
inputs as (J, B, K*bi), one batched matmul with vals stored (J, K*bi, bo)) is fastest for B = 1 and
B = 16; ops.einsum is as fast on TensorFlow but 10x slower on JAX (XLA re-lays the weights out on
every pass); element gathers ("kmaj") and bo = 1 are slow. The dense figure is memory-bound and
swings 2x with the machine's load, the sparse ones (in cache) much less.
"""
import argparse
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import keras  # noqa: E402
from keras import ops  # noqa: E402

BACKEND = keras.backend.backend()
if BACKEND == "tensorflow":
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")  # one tf.function per configuration: the retracing warnings
elif BACKEND == "jax":
    import jax
    import jax.numpy as jnp
else:
    sys.exit(f"KERAS_BACKEND={BACKEND}: only tensorflow and jax are measured here")

SHAPES = [(1024, 3072), (1024, 4096), (1024, 1024)]
DENSITIES = [0.1, 0.05, 0.04]
BLOCKS = [(1, 16), (1, 32), (1, 8), (4, 4), (8, 8), (16, 16), (16, 1), (4, 16), (1, 64), (4, 32)]  # last 2: extra
BATCHES = [1, 16]


# --- the gather: Keras' ops.take, or the backend's own ----------------------------------------

def gather(x, idx, axis, native):
    """take(x, idx, axis). Keras' take wraps negative indices and, on JAX, fills out-of-range
    results with NaN (a select on every gathered element); `native` is the backend's plain gather."""
    if not native:
        return ops.take(x, idx, axis=axis)
    if BACKEND == "tensorflow":
        return tf.gather(x, idx, axis=axis)
    return x.at[(slice(None),) * axis + (idx,)].get(mode="promise_in_bounds")


# --- the expressions: storage (numpy, once), setup (per call), apply (per pass) ----------------
# Each: store(idx, vals, bi, bo, n_in, n_out) -> tuple of arrays (what is kept; "mem" counts it),
#       setup(stored, dims) -> state (compiled, outside the loop), apply(x, state, dims) -> y.

def _store_jk(idx, vals, *_):  # idx (J, K), vals (J, K, bi, bo): block-column major
    return idx, vals


def _setup_id(p, d):
    return p


def _gather_blocks(x, idx, d):  # -> (B, J, K, bi)    [(B, K, J, bi) for idx (K, J)]
    xb = ops.reshape(x, (-1, d["n_in"] // d["bi"], d["bi"]))
    return gather(xb, idx, 1, d["native"])


def _apply_einsum(x, p, d):
    idx, vals = p
    g = _gather_blocks(x, idx, d)
    y = ops.einsum("bjki,jkio->bjo", g, vals)
    return ops.reshape(y, (-1, d["n_out"]))


def _apply_bsum(x, p, d):
    idx, vals = p
    g = _gather_blocks(x, idx, d)
    y = ops.sum(g[..., None] * vals[None], axis=(2, 3))
    return ops.reshape(y, (-1, d["n_out"]))


def _store_bmm(idx, vals, bi, bo, n_in, n_out):  # vals (J, K*bi, bo): one small matmul per j
    return idx, vals.reshape(vals.shape[0], -1, bo)


def _apply_bmm(x, p, d):
    idx, vals = p
    g = _gather_blocks(x, idx, d)  # (B, J, K, bi)
    g = ops.transpose(ops.reshape(g, (-1, g.shape[1], g.shape[2] * g.shape[3])), (1, 0, 2))
    y = ops.matmul(g, vals)  # (J, B, bo)
    return ops.reshape(ops.transpose(y, (1, 0, 2)), (-1, d["n_out"]))


def _apply_bmm0(x, p, d):  # bmm, gathering from x transposed: rows of B*bi contiguous
    idx, vals = p
    B = x.shape[0]
    xt = ops.transpose(ops.reshape(x, (B, d["n_in"] // d["bi"], d["bi"])), (1, 0, 2))  # (nb, B, bi)
    g = gather(xt, idx, 0, d["native"])  # (J, K, B, bi)
    J, K = idx.shape
    g = ops.reshape(ops.transpose(g, (0, 2, 1, 3)), (J, B, K * d["bi"]))
    y = ops.matmul(g, vals)  # (J, B, bo)
    return ops.reshape(ops.transpose(y, (1, 0, 2)), (B, d["n_out"]))


def _store_t(idx, vals, *_):  # idx (K, J), vals (K, bi, J, bo): reduce over leading axes, outputs contiguous
    return np.ascontiguousarray(idx.T), np.ascontiguousarray(vals.transpose(1, 2, 0, 3))


def _gather_t(x, idx_t, d):  # -> (B, K, bi, J)
    g = _gather_blocks(x, idx_t, d)  # (B, K, J, bi)
    return ops.transpose(g, (0, 1, 3, 2))


def _apply_tbsum(x, p, d):
    idx_t, vals_t = p
    g = _gather_t(x, idx_t, d)
    y = ops.sum(g[..., None] * vals_t[None], axis=(1, 2))  # (B, J, bo)
    return ops.reshape(y, (-1, d["n_out"]))


def _apply_tein(x, p, d):
    idx_t, vals_t = p
    g = _gather_t(x, idx_t, d)
    y = ops.einsum("bkij,kijo->bjo", g, vals_t)
    return ops.reshape(y, (-1, d["n_out"]))


def _store_kmaj(idx, vals, bi, bo, n_in, n_out):  # idx (J, K), vals (K, bi, n_out): per-output rows
    J, K = idx.shape
    return idx, np.ascontiguousarray(vals.transpose(1, 2, 0, 3).reshape(K, bi, n_out))


def _setup_kmaj(p, d):  # the input of every stored weight: (K, bi, n_out), once per call
    idx, vals = p
    per_out = ops.transpose(ops.repeat(idx, d["bo"], axis=0))  # (K, n_out)
    flat = per_out[:, None, :] * d["bi"] + ops.arange(d["bi"], dtype="int32")[None, :, None]
    return flat, vals


def _apply_kmaj(x, p, d):  # y = sum_{k,i} x[:, flat[k, i]] * vals[k, i]: one gather per weight
    flat, vals = p
    g = gather(x, flat, 1, d["native"])  # (B, K, bi, n_out)
    return ops.sum(g * vals[None], axis=(1, 2))


EXPRS = {  # name: (store, setup, apply, storage order of vals)
    "einsum": (_store_jk, _setup_id, _apply_einsum, "(J,K,bi,bo)"),
    "bsum": (_store_jk, _setup_id, _apply_bsum, "(J,K,bi,bo)"),
    "bmm": (_store_bmm, _setup_id, _apply_bmm, "(J,K*bi,bo)"),
    "bmm0": (_store_bmm, _setup_id, _apply_bmm0, "(J,K*bi,bo)"),
    "tbsum": (_store_t, _setup_id, _apply_tbsum, "(K,bi,J,bo)"),
    "tein": (_store_t, _setup_id, _apply_tein, "(K,bi,J,bo)"),
    "kmaj": (_store_kmaj, _setup_kmaj, _apply_kmaj, "(K,bi,n_out)"),
}


def make_layout(n_in, n_out, bi, bo, density, seed=0):
    """idx (J, K) sorted distinct input blocks per block-column, vals (J, K, bi, bo), and W dense."""
    rng = np.random.default_rng(seed)
    nb, J = n_in // bi, n_out // bo
    K = max(1, int(round(density * nb)))
    idx = np.sort(np.stack([rng.choice(nb, K, replace=False) for _ in range(J)]), axis=1).astype(np.int32)
    vals = (rng.standard_normal((J, K, bi, bo)) / np.sqrt(K * bi)).astype(np.float32)
    W = np.zeros((nb, bi, J, bo), np.float32)
    for j in range(J):
        W[idx[j], :, j, :] = vals[j]
    return idx, vals, W.reshape(n_in, n_out), K


# --- the compiled loops ------------------------------------------------------------------------

def compile_loop(step, setup, loops):
    """fn(x0, params) -> x after `loops` passes of x <- x0 + 1e-6 * step(x, setup(params))[:, :n_in]."""
    if BACKEND == "tensorflow":
        @tf.function(jit_compile=True)
        def fn(x0, params):
            state = setup(params)
            n_in = x0.shape[1]

            def body(i, x):
                return i + 1, x0 + 1e-6 * step(x, state)[:, :n_in]
            return tf.while_loop(lambda i, x: i < loops, body, (tf.constant(0), x0))[1]
        return lambda x0, params: fn(x0, params).numpy()

    @jax.jit
    def fn(x0, params):
        state = setup(params)
        n_in = x0.shape[1]
        return jax.lax.fori_loop(0, loops, lambda i, x: x0 + 1e-6 * step(x, state)[:, :n_in], x0)
    return lambda x0, params: np.asarray(jax.block_until_ready(fn(x0, params)))


def to_backend(arrays):
    if BACKEND == "tensorflow":
        return tuple(tf.constant(a) for a in arrays)
    return tuple(jnp.asarray(a) for a in arrays)


class Case:
    """One compiled configuration, kept so that phase 3 re-times the same executable."""

    def __init__(self, shape, density, B, block, expr, native, loops):
        n_in, n_out = shape
        self.key = (shape, density, B, block, expr, native)
        rng = np.random.default_rng(1)
        x0 = (rng.standard_normal((B, n_in))).astype(np.float32)
        if expr == "dense":
            W = (rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)).astype(np.float32)
            stored, W_ref, self.kept = (W,), W, 1.0
            setup, step = (lambda p: p), (lambda x, p: ops.matmul(x, p[0]))
        elif expr == "none":  # the loop alone: y = x
            stored, W_ref, self.kept = (np.zeros((1,), np.float32),), None, 0.0
            setup, step = (lambda p: p), (lambda x, p: x)
        else:
            bi, bo = block
            idx, vals, W_ref, K = make_layout(n_in, n_out, bi, bo, density)
            self.kept = K * bi / n_in
            store, setup_e, apply_e, _ = EXPRS[expr]
            stored = store(idx, vals, bi, bo, n_in, n_out)
            d = dict(n_in=n_in, n_out=n_out, bi=bi, bo=bo, native=native)
            setup, step = (lambda p: setup_e(p, d)), (lambda x, p: apply_e(x, p, d))
        self.mem = sum(a.nbytes for a in stored)
        self.x0, self.params = to_backend((x0,))[0], to_backend(stored)
        # check one pass against numpy, through the same code (eager)
        if W_ref is not None:
            y = np.asarray(ops.convert_to_numpy(step(self.x0, setup(self.params))))
            ref = x0 @ W_ref
            err = np.abs(y - ref).max() / (np.abs(ref).max() + 1e-12)
            if err > 1e-4:
                raise AssertionError(f"{self.key}: relative error {err:.2e}")
        self.fn = compile_loop(step, setup, loops)
        self.loops = loops
        t = time.perf_counter()
        self.fn(self.x0, self.params)
        self.compile_s = time.perf_counter() - t

    def time(self, reps, give_up_us=None):
        """Best of `reps` timings, in us per pass; one timing only where it is over give_up_us."""
        best = float("inf")
        for _ in range(reps):
            t = time.perf_counter()
            self.fn(self.x0, self.params)
            best = min(best, time.perf_counter() - t)
            if give_up_us and best / self.loops * 1e6 > give_up_us:
                break
        return best / self.loops * 1e6


CACHE = {}


def measure(shape, density, B, block, expr, native, args, give_up_us=None):
    key = (shape, density, B, block, expr, native)
    if key not in CACHE:
        CACHE[key] = Case(shape, density, B, block, expr, native, args.loops)
    c = CACHE[key]
    return dict(shape=shape, density=density, B=B, block=block, expr=expr, native=native,
                kept=c.kept, mem=c.mem, us=c.time(args.reps, give_up_us))


HEAD = f"{'n_in x n_out':>12} {'dens':>5} {'kept':>6} {'B':>3} {'block':>7} {'expr':>7} {'gather':>6} " \
       f"{'mem KiB':>8} {'us/pass':>8} {'x dense':>8}"


def row(r, dense_us=None):
    block = "-" if r["expr"] in ("dense", "none") else f"{r['block'][0]}x{r['block'][1]}"
    g = "-" if r["expr"] in ("dense", "none") else ("native" if r["native"] else "keras")
    sp = f"{dense_us / r['us']:8.2f}" if dense_us else f"{'':8}"
    print(f"{r['shape'][0]:>5}x{r['shape'][1]:<6} {r['density']:5.2f} {r['kept']:6.3f} {r['B']:3d} {block:>7} "
          f"{r['expr']:>7} {g:>6} {r['mem'] / 1024:8.0f} {r['us']:8.1f} {sp}", flush=True)


def label(c):
    block, expr, native = c
    return f"{block[0]}x{block[1]} {expr} {'native' if native else 'keras'}"


def phase1(args, shape0, dens0):
    """Every block x expression at one shape and density, B = 1 and 16: the best `top` per B."""
    print(f"\n== phase 1: all layouts x expressions, {shape0}, density {dens0}, Keras ops.take")
    print(HEAD)
    best = {}
    for B in BATCHES:
        dense = measure(shape0, 1.0, B, None, "dense", False, args)
        row(measure(shape0, 0.0, B, None, "none", False, args))
        row(dense, dense["us"])
        res = []
        for block in BLOCKS:
            for expr in EXPRS:
                r = measure(shape0, dens0, B, block, expr, False, args, give_up_us=3 * dense["us"])
                row(r, dense["us"])
                res.append(r)
        res.sort(key=lambda r: r["us"])
        # the backend's own gather for the best few
        print(f"-- B={B}: the best {args.top + 2} with the backend's own gather")
        for r in res[: args.top + 2]:
            rn = measure(shape0, dens0, B, r["block"], r["expr"], True, args)
            row(rn, dense["us"])
            res.append(rn)
        res.sort(key=lambda r: r["us"])
        best[B], seen = [], set()
        for r in res:  # the best `top` distinct (block, expression), each with its faster gather
            if (r["block"], r["expr"]) not in seen and len(best[B]) < args.top:
                seen.add((r["block"], r["expr"]))
                best[B].append((r["block"], r["expr"], r["native"]))
        print(f"-- B={B}: kept " + "; ".join(label(c) for c in best[B]))
    return best


def parse_candidate(text):
    block, expr, g = text.split()
    bi, bo = block.split("x")
    assert expr in EXPRS and g in ("keras", "native"), text
    return (int(bi), int(bo)), expr, g == "native"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="64 loops, 2 reps")
    p.add_argument("--loops", type=int, default=256)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--top", type=int, default=3, help="candidates of phase 1 kept per B")
    p.add_argument("--phase1-only", action="store_true")
    p.add_argument("--candidates", help='no phase 1: phases 2-3 for these, e.g. '
                   '"1x32 bmm native, 1x64 einsum keras"')
    args = p.parse_args()
    if args.candidates:
        args.candidates = [parse_candidate(c) for c in args.candidates.split(",")]
    if args.quick:
        args.loops, args.reps = 64, 2
    import platform
    print(f"Keras {keras.__version__} on {BACKEND}; {os.cpu_count()} cores, {platform.processor() or platform.machine()}; "
          f"{args.loops} passes per loop, best of {args.reps}; load average {os.getloadavg()[0]:.2f}")
    t_start = time.perf_counter()
    shape0, dens0 = SHAPES[0], 0.05

    if args.candidates:
        best = {B: args.candidates for B in BATCHES}
    else:
        best = phase1(args, shape0, dens0)
        print(f"[phase 1: {time.perf_counter() - t_start:.0f} s]")
    if args.phase1_only:
        return

    # phase 2: the candidates of each B over every shape and density, against dense
    print("\n== phase 2: the best candidates over shapes and densities")
    print(HEAD)
    for shape in SHAPES:
        for B in BATCHES:
            dense = measure(shape, 1.0, B, None, "dense", False, args)
            row(dense, dense["us"])
            if shape == shape0:  # the sparse layout at density 1.0: its overhead
                b, e, n = best[B][0]
                row(measure(shape, 1.0, B, b, e, n, args), dense["us"])
            for density in DENSITIES:
                for b, e, n in best[B]:
                    row(measure(shape, density, B, b, e, n, args), dense["us"])
    print(f"[up to phase 2: {time.perf_counter() - t_start:.0f} s]")

    # phase 3: the key comparison again (same executables), for the noise
    print(f"\n== phase 3: again, {shape0}, the candidates and dense (same compiled functions)")
    print(HEAD)
    for B in BATCHES:
        for density in (0.1, 0.05):
            dense = measure(shape0, 1.0, B, None, "dense", False, args)
            row(dense, dense["us"])
            for b, e, n in best[B]:
                row(measure(shape0, density, B, b, e, n, args), dense["us"])
    print(f"[total: {time.perf_counter() - t_start:.0f} s; load average {os.getloadavg()[0]:.2f}]")


if __name__ == "__main__":
    main()
