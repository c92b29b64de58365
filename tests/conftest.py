"""Shared helpers: run the real commands as a user would, and make small audio files."""
import contextlib
import fcntl
import io
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from srnn.errors import run_cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# tests/jax runs in a process of its own with KERAS_BACKEND=jax (tests/test_backends.py starts it)
collect_ignore = [] if os.environ.get("KERAS_BACKEND") == "jax" else ["jax"]
DEMO = os.path.join(ROOT, "blizzard", "tiny")
HIDDEN = ("tensorflow", "tensorboard", "tf_keras")


def hide_tensorflow():
    """Make TensorFlow (and tensorboard) impossible to import in this process, as if not installed:
    the JAX process runs so (SRNN_HIDE_TENSORFLOW=1), as on the GPU machine srnn is measured on,
    which has JAX but no TensorFlow; anything of srnn's that needs TensorFlow on JAX fails there."""
    import importlib.machinery

    assert not [m for m in sys.modules if m.partition(".")[0] in HIDDEN], "TensorFlow is imported already"
    find_spec = importlib.machinery.PathFinder.find_spec

    def find_spec_without_tensorflow(name, path=None, target=None):
        return None if name.partition(".")[0] in HIDDEN else find_spec(name, path, target)

    importlib.machinery.PathFinder.find_spec = find_spec_without_tensorflow


if os.environ.get("SRNN_HIDE_TENSORFLOW") == "1":
    hide_tensorflow()


def run_script(script, *args, cwd=None, timeout=600, env=None):
    """Run preprocess.py / train_srnn.py in a new interpreter, as a user does: for the tests of the
    scripts' own wiring (exit codes, signals, resource limits, what a fresh process imports).
    Returns a CompletedProcess (text)."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, script), *map(str, args)],
        cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full_env,
    )


def run_tool(script, *args, cwd=None, env=None):
    """Run preprocess.py / train_srnn.py in this process through the scripts' own entry
    (`run_cli(main, argv)`: the same parsing, one-line errors and exit codes), in `cwd` with `env`
    added, its output captured; returns a CompletedProcess like `run_script`'s. A fresh interpreter
    per command cost most of the suite's time; the few tests that need one use `run_script`. An
    unexpected exception is not caught: it fails the test with its traceback, as "Traceback" on a
    script's stderr would."""
    from srnn.cli import preprocess_main, train_main

    main = {"preprocess.py": preprocess_main, "train_srnn.py": train_main}[script]
    argv = [str(a) for a in args]
    out, err = io.StringIO(), io.StringIO()
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    try:
        os.environ.update(env or {})
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = run_cli(main, argv)
            except SystemExit as e:  # argparse's usage errors and --help
                code = e.code if isinstance(e.code, int) else 2
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
    return subprocess.CompletedProcess([script, *argv], code, out.getvalue(), err.getvalue())


def assert_clean_error(proc, *words):
    """A one-line error naming the problem, a non-zero exit, no traceback."""
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr
    for w in words:
        assert w in errors[0], (w, errors[0])
    return errors[0]


def tone(freq, seconds, sr, channels=1, amp=0.5):
    t = np.arange(int(round(seconds * sr))) / sr
    x = amp * np.sin(2 * np.pi * freq * t)
    return np.repeat(x[:, None], channels, axis=1) if channels > 1 else x


def write_audio(path, x, sr, **kw):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    sf.write(path, x, sr, **kw)
    return path


def pytest_collection_modifyitems(items):
    """The longest tests first: the two JAX processes (test_backends.py's test_jax_*) and the demo's
    whole training, then the other slow ones, then the rest, so that the workers (fed one test at
    a time) end together instead of one of them starting a long test last."""
    def rank(item):
        if item.get_closest_marker("slow") is None:
            return 2
        longest = item.module.__name__ == "test_end_to_end" or item.name.startswith("test_jax_")
        return 0 if longest else 1

    items.sort(key=rank)  # stable: file order within each rank


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def built_once(tmp_path_factory, name, make):
    """A folder that `make(folder)` fills once per pytest run, shared by every pytest-xdist worker
    (a file lock under the run's base temp: the first worker to ask builds it, the others wait
    and read it). Trained models and their logs are the suite's costliest artefacts; each is made
    once, not once per worker. Treat the folder as read-only: copy what a test changes."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the run's base, above each worker's own
    folder = base / f"built-{name}"
    with open(base / f".built-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not (folder / ".done").exists():
            shutil.rmtree(folder, ignore_errors=True)  # a worker that failed half-way
            folder.mkdir()
            make(folder)
            (folder / ".done").write_text("")
    return folder


def save_json(path, value):
    with open(path, "w") as f:
        json.dump(value, f, default=float)  # numpy numbers as Python floats (exact for float32)


def load_json(path):
    with open(path) as f:
        return json.load(f)


MINI_SECONDS = 0.25  # the mini parts' length: 4000 samples, 16 chunks of 256 (an epoch of 32 steps)


@pytest.fixture(scope="session")
def mini_root(tmp_path_factory):
    """A folder with blizzard/mini_parts: the demo cut into parts of MINI_SECONDS, 10 of them kept
    and listed (with --trainstop 4 --validstop 6: 4 train, 2 valid, 4 test). Treat it as read-only.
    Short parts keep the many trainings on it short; they are real speech all the same."""
    from srnn import names

    def make(root):
        out = root / "blizzard" / "mini_parts"
        proc = run_tool("preprocess.py", DEMO, "--out", out, "--seconds", MINI_SECONDS)
        assert proc.returncode == 0, proc.stderr
        for f in out.glob("p*.wav"):
            if int(f.stem[1:]) >= 10:
                f.unlink()
        (out / "prompts.txt").write_text("".join(names.prompt_line(i) for i in range(10)))

    return built_once(tmp_path_factory, "mini", make)


MINI_CFG = {"slowdim": 16, "dim": 16}  # the mini runs' model (--slowdim 16 --dim 16)


@pytest.fixture(scope="session")
def small_checkpoints(tmp_path_factory):
    """Two small models with random weights, written as train_srnn.py writes them: a plain one and
    one conditioned on two labels ({"plain": path, "labelled": path}). Treat them as read-only."""
    def make(folder):
        import keras

        from srnn import checkpoint
        from srnn.config import ModelConfig
        from srnn.model import SampleRNN

        for name, labels in (("plain", ()), ("labelled", ("a", "b"))):
            keras.utils.set_random_seed(3)
            model = SampleRNN(ModelConfig(slowdim=16, dim=16, labels=labels))
            for w in model.weights:
                if w.path.endswith("/table"):  # the label vectors start at zero: give the labels a voice
                    w.assign(np.random.default_rng(0).normal(0, 0.5, w.shape))
            checkpoint.save(str(folder / f"{name}.h5"), model)

    folder = built_once(tmp_path_factory, "small_checkpoints", make)
    return {name: str(folder / f"{name}.h5") for name in ("plain", "labelled")}


@contextlib.contextmanager
def engine_choice(name, value):
    """srnn.engine.common's choice `name` (use_xla: the training steps'; generate_with_xla: the
    generation loop's) fixed to `value` while it lasts: the engines ask it there."""
    import srnn.engine.common

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(srnn.engine.common, name, lambda cfg: value)
        yield


def xla_off():
    """Training steps without XLA while it lasts, for the runs whose subject is not the compiled
    step: a tiny model's run takes a second or two instead of a compile of several. (XLA's training
    step, the default for small models, is the README demo's, test_model's and srnn.train's in
    test_api.)"""
    return engine_choice("use_xla", False)


@pytest.fixture
def no_xla():
    """xla_off for the whole test."""
    with xla_off():
        yield


@pytest.fixture(scope="session", autouse=True)
def generation_without_xla():
    """The generation loop without XLA in this process, wherever a test does not ask for XLA by
    name (`sampler(xla=True)`, --export's SavedModel): the tests generate a few hundred samples,
    which take milliseconds either way, while XLA's compile of each new loop takes seconds. The
    same maths runs (test_sample checks the compiled loop against the model); the scripts in new
    interpreters (run_script) and the JAX process compile as users' runs do."""
    with engine_choice("generate_with_xla", os.environ.get("KERAS_BACKEND") == "jax"):
        yield


@pytest.fixture
def xla_generation():
    """The generation loop compiled by XLA again, for the tests that compare this process's audio
    with what a script in a new interpreter or a SavedModel made: TensorFlow draws its random
    numbers with another generator inside XLA, so the same seed gives other audio without it."""
    with engine_choice("generate_with_xla", True):
        yield


@pytest.fixture(scope="session")
def base_run(mini_root, tmp_path_factory):
    """One 2-epoch training run on the mini corpus (seed 1337, batch 2, cutlen 256, a checkpoint
    after every epoch) that several modules share; it is watched (--tensorboard, --audition 1)
    and exported, and the runs compared with it are not, so the comparisons also show that
    watching leaves the losses unchanged. Its steps are not compiled by XLA (as `no_xla`); the
    runs that must give its losses to the bit say so too. Returns (folder, history, log lines)."""
    from srnn.config import ModelConfig
    from srnn.training import TrainOptions, train

    def make(out):
        lines = []
        opts = TrainOptions(exp="mini", nepochs=2, batchsize=2, trainstop=4, validstop=6, cutlen=256, xla=False,
                            parts_root=str(mini_root / "blizzard"), out_dir=str(out), svepoch=1,
                            tensorboard=str(out / "tb"), audition=1, audition_seqs=2, audition_seconds=0.25,
                            export=str(out / "exported"))
        history = train(ModelConfig(**MINI_CFG), opts, log=lines.append)
        save_json(out / "run.json", {"history": history, "lines": lines})

    out = built_once(tmp_path_factory, "base", make)
    run = load_json(out / "run.json")
    return out, run["history"], run["lines"]


def small_archs():
    """The architectures every equivalence test runs on, small (ids name them in the report)."""
    from srnn.config import ModelConfig

    return {
        "default": ModelConfig(slowdim=24, dim=16),
        "2-tier": ModelConfig(slowdim=24, dim=16, frames=(2,)),
        "4-tier": ModelConfig(slowdim=24, dim=16, frames=(64, 16, 4)),
        "lstm3-skip": ModelConfig(slowdim=24, dim=16, frames=(16, 4), rnn="lstm", rnn_layers=3, skip=True),
        "emb32-q64-labels": ModelConfig(slowdim=24, dim=16, emb_size=32, q_levels=64, labels=("a", "b", "c")),
    }


ARCH_IDS = ["default", "2-tier", "4-tier", "lstm3-skip", "emb32-q64-labels"]


def mix_for(model, batch, seed=0):
    """Label weights for a batch of a conditioned model (random mixtures, so that every label
    table counts), None for an unconditional one."""
    n = model.cfg.n_labels
    return np.random.default_rng(seed).dirichlet(np.ones(n), batch).astype(np.float32) if n else None


@pytest.fixture(scope="module", params=ARCH_IDS, ids=ARCH_IDS)
def arch_model(request):
    """A small model of each architecture, with non-trivial learned initial states (so that tests
    also check where they are used)."""
    import keras

    from srnn.model import SampleRNN

    keras.utils.set_random_seed(8)
    m = SampleRNN(small_archs()[request.param])
    rng = np.random.default_rng(2)
    for tier in m.frame_tiers:
        for rnn in tier.rnns:
            rnn.h0.assign(rng.normal(size=rnn.h0.shape).astype(np.float32) * 0.5)
    for tier in m.tiers:  # and label vectors, which start at zero
        if tier.label is not None:
            tier.label.table.assign(rng.normal(size=tier.label.table.shape).astype(np.float32))
    return m
