"""srnn on one GPU: training and sampling speed beside PyTorch's cuDNN GRU and the GPU's bf16
matmul rate, measured in the same run, with the peak GPU memory of each row.

For a GPU machine with JAX and PyTorch but no TensorFlow and no network: here, once,
`bash bench/gpu_wheels.sh` puts the wheels it lacks (Keras and a few small ones, 4.5 MB) in ./.whl;
there, in the repo root, with .whl carried along (under 8 minutes on an H200):

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site && KERAS_BACKEND=jax python3 bench/gpu.py

    KERAS_BACKEND=tensorflow python bench/gpu.py --quick    # CPU smoke test: tiny sizes, few steps
    python bench/gpu.py --only train,sample                 # sections: yardstick, train, sample, why

Rows run in a fixed order, one line each; a row that fails prints one line and the rest go on.
The last section, `why`, says where a training step's time goes if the targets are missed: srnn's
forward pass alone, the yardstick's GRUs as a plain JAX lax.scan (autodiff, no cuDNN), and the
music model's LSTMs through PyTorch's cuDNN and through JAX's (jax.experimental.rnn).
"""
import argparse
import gc
import os
import platform
import sys
import time

STARTED = time.monotonic()  # --budget-s counts the imports too
# torch and JAX share the GPU: JAX must not take 75% of it up front, and grown on demand its
# allocator's high-water mark is what the rows used
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from srnn.config import ModelConfig  # noqa: E402
from srnn.generation import generate_levels  # noqa: E402
from srnn.memory import MIN_ROOM  # noqa: E402
from srnn.model import SampleRNN  # noqa: E402
from srnn.training import Steps  # noqa: E402

import keras  # noqa: E402  (after srnn, which sets the backend's defaults)

TORCH_DEVICE = "cuda"  # the yardsticks' device (a CPU check of their shapes may change it)
REAL_TIME = 16000  # samples per second of 16 kHz audio
TARGET_TRAIN = TARGET_SAMPLE = 1e6  # the goals (docs/performance.md), samples/s
SIZES = {  # the goals' rows, and tiny ones for a CPU smoke test
    False: dict(dim=1024, cutlen=512, batches=(64, 128), tiny_cutlen=512, streams=(1, 16, 256, 4096),
                train_s=3.0, sample_s=1.5),
    True: dict(dim=32, cutlen=64, batches=(2, 4), tiny_cutlen=64, streams=(1, 4, 16, 64),
               train_s=0.5, sample_s=0.3),
}


def original(dim):
    return ModelConfig(slowdim=dim, dim=dim)


def music(dim):
    return ModelConfig(slowdim=dim, dim=dim, frames=(16, 4), rnn="lstm", rnn_layers=3, skip=True)


def say(section, name, text):
    print(f"{section:<9} | {name:<38} | {text}", flush=True)


def reason(e):
    """An exception in one line: its message's first line, or its last where the first only
    introduces a traceback (TensorFlow's 'in user code:')."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    text = (lines[-1] if lines[0].endswith(":") else lines[0]) if lines else ""
    name = type(e).__name__
    return text[:300] if text.startswith(name) else f"{name}: {text[:300]}"


class Memory:
    """The backend's peak GPU memory over a row. TensorFlow resets its peak per row; JAX keeps one
    high-water mark for the process, so a row that did not raise it shows '<=' that mark."""

    def __init__(self, backend):
        self.stats = self.tf = None  # JAX's memory_stats of the GPU, or TensorFlow with a GPU
        self.before = 0
        if backend == "jax":
            import jax

            gpus = [d for d in jax.devices() if d.platform == "gpu"]
            self.stats = gpus[0].memory_stats if gpus else None
        elif backend == "tensorflow":
            tf = sys.modules["tensorflow"]  # imported by Keras already
            self.tf = tf if tf.config.list_physical_devices("GPU") else None
        self.gpu = self.stats is not None or self.tf is not None

    def start(self):
        if self.tf is not None:
            self.tf.config.experimental.reset_memory_stats("GPU:0")
        elif self.stats is not None:
            self.before = self.stats().get("peak_bytes_in_use", 0)

    def peak(self):
        if self.tf is not None:
            return f"peak GPU {self.tf.config.experimental.get_memory_info('GPU:0')['peak'] / 1e9:.2f} GB"
        if self.stats is not None:
            peak = self.stats().get("peak_bytes_in_use", 0)
            return f"peak GPU {'' if peak > self.before else '<= '}{peak / 1e9:.2f} GB"
        return "peak GPU n/a (no GPU)"


class Rows:
    """Runs rows within --budget-s: a row is skipped when less time is left than the longest row
    so far took. Each row's figure is kept for the ratios at the end."""

    def __init__(self, budget_s):
        self.budget, self.longest, self.figures = budget_s, 0.0, {}

    def run(self, section, name, key, measure):
        left = self.budget - (time.monotonic() - STARTED)
        if left < self.longest:
            say(section, name, f"skipped: {left:.0f} s of --budget-s left, the longest row took {self.longest:.0f} s")
            return
        t0 = time.monotonic()
        try:
            self.figures[key], text = measure()
            say(section, name, text)
        except Exception as e:  # noqa: BLE001  (one line per failed row; the others still run)
            say(section, name, f"FAILED: {reason(e)}")
        gc.collect()  # the row's model and buffers go before the next row's peak is read
        self.longest = max(self.longest, time.monotonic() - t0)


def describe(backend, memory, torch):
    say("env", "python / numpy", f"{platform.python_version()} / {np.__version__}")
    devices = "devices not listed for this backend"
    if backend == "jax":
        import jax

        devices = (f"jax {jax.__version__}: " + ", ".join(f"{d} ({d.device_kind})" for d in jax.devices())
                   + f"; jax_default_matmul_precision={jax.config.jax_default_matmul_precision}")
    elif backend == "tensorflow":
        tf = sys.modules["tensorflow"]
        devices = f"tensorflow {tf.__version__}: " + ", ".join(d.name for d in tf.config.list_logical_devices())
    say("env", "keras backend / devices", f"keras {keras.__version__} on {backend}; {devices}")
    if not memory.gpu:
        say("env", "GPU", f"none seen by {backend}")
    if torch is None:
        say("env", "torch", "torch not available")
    elif torch.cuda.is_available():
        say("env", "torch / GPU", f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN "
            f"{torch.backends.cudnn.version()} (TF32 in cuDNN: {torch.backends.cudnn.allow_tf32}); "
            f"{torch.cuda.get_device_name(0)}, {torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB")
    else:
        say("env", "torch", f"torch {torch.__version__}: no CUDA device")


def cuda_seconds(torch, fn, reps):
    """Mean GPU time of `fn` over `reps` calls after three warm-ups, between CUDA events."""
    for _ in range(3):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1e3 / reps


def torch_peak(torch):
    return f"peak GPU {torch.cuda.max_memory_allocated() / 1e9:.2f} GB (torch)"


def tier_shapes(cfg, cutlen):
    """Per frame tier of `cfg`: (steps in a chunk of `cutlen`, RNN input width, RNN width). The top
    tier's RNN reads its frame of samples; the others read a `dim`-wide projection."""
    return [(cutlen // frame, frame if k == 0 else width, width)
            for k, (frame, width) in enumerate(zip(cfg.frames, cfg.widths()))]


def cudnn_yardstick(torch, cfg, batch, cutlen, dtype):
    """PyTorch's cuDNN RNNs (nn.GRU / nn.LSTM, `cfg.rnn_layers` layers) forward and backward at the
    shapes of `cfg`'s frame tiers for one chunk (for the original: a GRU over cutlen/8 frames of 8
    samples and one over cutlen/2 vectors of `dim`). The tiers' RNNs are the sequential part of
    srnn's step; its dense layers and the sample MLP are not in this figure."""
    torch.cuda.reset_peak_memory_stats()
    kw = dict(device=TORCH_DEVICE, dtype=getattr(torch, dtype))
    layer = {"gru": torch.nn.GRU, "lstm": torch.nn.LSTM}[cfg.rnn]
    rnns, xs = [], []
    for k, (steps, width_in, width) in enumerate(tier_shapes(cfg, cutlen)):
        rnns.append(layer(width_in, width, num_layers=cfg.rnn_layers, batch_first=True, **kw))
        xs.append(torch.randn(batch, steps, width_in, requires_grad=k > 0, **kw))  # the tier above's output

    def step():
        sum(rnn(x)[0].float().sum() for rnn, x in zip(rnns, xs)).backward()

    seconds = cuda_seconds(torch, step, reps=10)
    rate = batch * cutlen / seconds
    return rate, f"{rate:>13,.0f} samples/s | all tiers fwd+bwd {seconds * 1e3:.1f} ms | {torch_peak(torch)}"


def matmul_yardstick(torch, n=8192):
    torch.cuda.reset_peak_memory_stats()
    a, b = (torch.randn(n, n, device=TORCH_DEVICE, dtype=torch.bfloat16) for _ in range(2))
    seconds = cuda_seconds(torch, lambda: a @ b, reps=10)
    tflops = 2 * n ** 3 / seconds / 1e12
    return tflops, f"{tflops:>13,.0f} TFLOP/s | {seconds * 1e3:.2f} ms a product | {torch_peak(torch)}"


def step_rate(cfg, batch, cutlen, precision, seconds, memory, train=True):
    """Target samples/s of srnn's compiled training step (or, with train=False, its evaluation
    step: the forward pass and the loss) on a random chunk, timed after compilation and warm-up;
    each step's loss is read (as training does), which waits for the step to finish."""
    memory.start()
    keras.utils.set_random_seed(0)
    steps = Steps(SampleRNN(cfg, precision=precision), xla=True, evaluate_only=not train)
    step = steps.train_step if train else (lambda *a: steps.eval_step(*a)[:2])
    rng = np.random.default_rng(0)
    x = rng.integers(0, cfg.q_levels, (batch, cutlen + cfg.big_frame)).astype(np.int32)
    mask = np.ones((batch, cutlen), np.float32)
    mix = np.zeros((batch, 0), np.float32)
    first, later = (keras.ops.convert_to_tensor(np.float32(r)) for r in (1.0, 0.0))
    states = steps.zero_states(batch)
    t0 = time.perf_counter()
    loss, states = step(x, mask, first, states, mix)
    float(loss)
    compile_s = time.perf_counter() - t0
    for _ in range(2):
        loss, states = step(x, mask, later, states, mix)
    float(loss)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or n < 3:
        loss, states = step(x, mask, later, states, mix)
        float(loss)
        n += 1
    took = (time.perf_counter() - t0) / n
    rate = batch * cutlen / took
    return rate, (f"{rate:>13,.0f} samples/s | step {took * 1e3:.1f} ms x {n} | first step {compile_s:.1f} s | "
                  f"{memory.peak()}")


def sample_row(cfg, streams, seconds, memory):
    """Samples/s of the compiled generation loop of an untrained model (the weights do not change
    its speed): a first call compiles, a second is timed; if that was much shorter than `seconds`,
    a longer one is timed (up to the compiled call's room, so no new compilation)."""
    memory.start()
    keras.utils.set_random_seed(0)
    model = SampleRNN(cfg)
    sampler, bf = model.sampler(precision="float32"), model.cfg.big_frame
    n = max(8 * bf, 8192 // streams // bf * bf)
    t0 = time.perf_counter()
    generate_levels(sampler, streams, n, seed=0)
    compile_s = time.perf_counter() - t0

    def timed(n):
        t0 = time.perf_counter()
        generate_levels(sampler, streams, n, seed=1)
        return time.perf_counter() - t0

    took = timed(n)
    longer = min(MIN_ROOM, int(seconds * n / took) // bf * bf)
    if longer > 2 * n:
        n, took = longer, timed(longer)
    per = n / took
    return per * streams, (f"{per:>13,.0f} samples/s a stream, {per * streams:,.0f} in all | {n} samples in "
                           f"{took:.2f} s | first call {compile_s:.1f} s | {memory.peak()}")


def jax_seconds(fn, args, reps=10):
    """Mean wall time of the jitted `fn(*args)` over `reps` calls after three warm-ups (the last
    result waited for: JAX runs the calls in order)."""
    for _ in range(3):
        jax_block(fn(*args))
    t0 = time.perf_counter()
    for _ in range(reps):
        out = fn(*args)
    jax_block(out)
    return (time.perf_counter() - t0) / reps


def jax_block(tree):
    import jax

    return jax.block_until_ready(tree)


def scan_gru_row(cfg, batch, cutlen, memory):
    """The yardstick's GRUs written plainly in JAX: lax.scan over a GRU cell, differentiated by
    jax.grad (no custom backward), float32. Beside cuDNN's figure it shows what XLA's loop costs;
    beside srnn's, what srnn adds to it (its hand-written backward, weight norm, the dense layers
    and the sample MLP)."""
    import jax
    import jax.numpy as jnp

    memory.start()
    keys = iter(jax.random.split(jax.random.key(0), 16))
    params, xs = [], []
    for steps, width_in, width in tier_shapes(cfg, cutlen):
        params.append(tuple(jax.random.normal(next(keys), shape, jnp.float32) * 0.02
                            for shape in ((width_in, 3 * width), (width, 3 * width), (3 * width,))))
        xs.append(jax.random.normal(next(keys), (batch, steps, width_in), jnp.float32))

    def gru(p, x):
        wx, wh, b = p
        width = wh.shape[0]

        def cell(h, xp):
            hp = h @ wh
            r = jax.nn.sigmoid(xp[:, :width] + hp[:, :width])
            z = jax.nn.sigmoid(xp[:, width:2 * width] + hp[:, width:2 * width])
            n = jnp.tanh(xp[:, 2 * width:] + r * hp[:, 2 * width:])
            h = (1 - z) * n + z * h
            return h, h

        _, ys = jax.lax.scan(cell, jnp.zeros((x.shape[0], width), x.dtype), jnp.swapaxes(x @ wx + b, 0, 1))
        return ys.sum()

    step = jax.jit(jax.grad(lambda params, xs: sum(gru(p, x) for p, x in zip(params, xs)), argnums=(0, 1)))
    seconds = jax_seconds(step, (params, xs))
    rate = batch * cutlen / seconds
    return rate, f"{rate:>13,.0f} samples/s | all tiers fwd+bwd {seconds * 1e3:.1f} ms | {memory.peak()}"


def jax_cudnn_lstm_row(cfg, batch, cutlen, memory):
    """JAX's cuDNN LSTM (jax.experimental.rnn.lstm: cuDNN only, no CPU path) forward and backward at
    the shapes of `cfg`'s frame tiers, float32: whether that path would close a gap to PyTorch's."""
    import jax
    import jax.numpy as jnp
    from jax.experimental import rnn

    memory.start()
    keys = iter(jax.random.split(jax.random.key(0), 16))
    weights, xs, shapes = [], [], tier_shapes(cfg, cutlen)
    for steps, width_in, width in shapes:
        weights.append(rnn.init_lstm_weight(next(keys), width_in, width, cfg.rnn_layers, False))
        xs.append(jax.random.normal(next(keys), (batch, steps, width_in), jnp.float32))

    def loss(weights, xs):
        total = 0.0
        for w, x, (steps, width_in, width) in zip(weights, xs, shapes):
            zeros = jnp.zeros((cfg.rnn_layers, batch, width), jnp.float32)
            y, _, _ = rnn.lstm(x, zeros, zeros, w, jnp.full((batch,), steps, jnp.int32), input_size=width_in,
                               hidden_size=width, num_layers=cfg.rnn_layers, dropout=0.0, bidirectional=False)
            total = total + y.sum()
        return total

    step = jax.jit(jax.grad(loss, argnums=(0, 1)))
    seconds = jax_seconds(step, (weights, xs))
    rate = batch * cutlen / seconds
    return rate, f"{rate:>13,.0f} samples/s | all tiers fwd+bwd {seconds * 1e3:.1f} ms | {memory.peak()}"


def ratios(figures, size):
    """The goals as ratios of this run's figures, then the ratios that say where a step's
    time goes (no targets)."""
    dim, batch, s_max = size["dim"], size["batches"][-1], size["streams"][-1]
    train, gru = figures.get(("train", batch, "float32")), figures.get(("gru", batch, "float32"))

    def show(name, value, target=None):
        text = "n/a (a row it needs did not run)" if value is None else f"{value:.2f}"
        say("ratio", name, text if value is None or target is None else f"{text} (target >= {target})")

    def over(a, b):
        a, b = figures.get(a), figures.get(b)
        return a / b if a and b else None

    show(f"train d{dim} b{batch} f32 / cuDNN GRU", train and gru and train / gru, 0.5)
    show(f"train d{dim} b{batch} f32 / 1M", train and train / TARGET_TRAIN, 1)
    one = figures.get(("sample", 1))
    show(f"sample d{dim} 1 stream / 16k (real time)", one and one / REAL_TIME, 1)
    many = figures.get(("sample", s_max))
    show(f"sample d{dim} {s_max} streams / 1M", many and many / TARGET_SAMPLE, 1)
    show(f"forward's share of a train step d{dim} b{batch}", over(("train", batch, "float32"), ("forward", batch)))
    show(f"plain JAX scan GRU / cuDNN GRU b{batch}", over(("scan_gru", batch), ("gru", batch, "float32")))
    show(f"train d{dim} b{batch} f32 / plain JAX scan GRU", over(("train", batch, "float32"), ("scan_gru", batch)))
    show("music train / cuDNN LSTM (torch)", over(("music",), ("lstm", "torch")))
    show("cuDNN LSTM: JAX / torch", over(("lstm", "jax"), ("lstm", "torch")))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny sizes and few steps: a smoke test for a CPU")
    p.add_argument("--only", default="yardstick,train,sample,why", help="comma-separated sections to run")
    p.add_argument("--budget-s", type=float, default=420.0, help="skip the rows left when time runs short")
    args = p.parse_args()
    sections, size = args.only.split(","), SIZES[args.quick]
    try:
        import torch
    except ImportError:
        torch = None
    backend = keras.backend.backend()
    memory = Memory(backend)
    describe(backend, memory, torch)
    if not memory.gpu and not args.quick:
        say("env", "GPU", "no GPU: the full sizes would take hours here; run with --quick for a smoke test")
        return 1
    rows = Rows(args.budget_s)
    dim, cutlen = size["dim"], size["cutlen"]
    say("note", "peak GPU memory", "JAX keeps one high-water mark for the process: '<=' means a row did not raise it"
        if backend == "jax" else f"per row ({backend})")
    if "yardstick" in sections:
        if torch is None or not torch.cuda.is_available():
            say("yardstick", "cuDNN GRU, bf16 matmul", "torch not available" if torch is None else "no CUDA device")
        else:
            for batch in size["batches"]:
                for dtype in ("float32", "bfloat16"):
                    rows.run("yardstick", f"cuDNN GRU d{dim} b{batch} c{cutlen} {dtype}", ("gru", batch, dtype),
                             lambda: cudnn_yardstick(torch, original(dim), batch, cutlen, dtype))
            rows.run("yardstick", "bf16 matmul 8192^3", ("matmul",), lambda: matmul_yardstick(torch))
            torch.cuda.empty_cache()  # its cached blocks would be lost to JAX
    if "train" in sections:
        say("train", "model, batch, cutlen, precision", "target samples/s (batch * cutlen / step time)")
        rows.run("train", f"tiny: original d32 b2 c{size['tiny_cutlen']} float32", ("tiny",),
                 lambda: step_rate(original(32), 2, size["tiny_cutlen"], "float32", size["train_s"], memory))
        for precision in ("float32", "mixed_bfloat16"):
            for batch in size["batches"]:
                rows.run("train", f"original d{dim} b{batch} c{cutlen} {precision}", ("train", batch, precision),
                         lambda: step_rate(original(dim), batch, cutlen, precision, size["train_s"], memory))
        batch = size["batches"][0]
        rows.run("train", f"music d{dim} b{batch} c{cutlen} float32", ("music",),
                 lambda: step_rate(music(dim), batch, cutlen, "float32", size["train_s"], memory))
    if "sample" in sections:
        for streams in size["streams"]:
            rows.run("sample", f"original d{dim} {streams} stream(s) float32", ("sample", streams),
                     lambda: sample_row(original(dim), streams, size["sample_s"], memory))
    if "why" in sections:  # last: where a step's time goes, if the budget leaves time for it
        batch, small = size["batches"][-1], size["batches"][0]
        rows.run("why", f"srnn forward only d{dim} b{batch} c{cutlen}", ("forward", batch),
                 lambda: step_rate(original(dim), batch, cutlen, "float32", size["train_s"], memory, train=False))
        if backend == "jax":
            rows.run("why", f"plain JAX scan GRU d{dim} b{batch} c{cutlen}", ("scan_gru", batch),
                     lambda: scan_gru_row(original(dim), batch, cutlen, memory))
        if torch is not None and torch.cuda.is_available():
            rows.run("why", f"cuDNN LSTM (torch) music d{dim} b{small}", ("lstm", "torch"),
                     lambda: cudnn_yardstick(torch, music(dim), small, cutlen, "float32"))
            torch.cuda.empty_cache()
        if backend == "jax" and memory.gpu:  # jax.experimental.rnn has no CPU path
            rows.run("why", f"cuDNN LSTM (JAX) music d{dim} b{small}", ("lstm", "jax"),
                     lambda: jax_cudnn_lstm_row(music(dim), small, cutlen, memory))
    ratios(rows.figures, size)
    say("done", "wall time", f"{time.monotonic() - STARTED:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
