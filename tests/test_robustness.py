"""Every bad input a clear one-line error; nothing half-written; safe interruption; no NaN."""
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
import soundfile as sf

from conftest import ROOT, assert_clean_error, run_tool, tone, write_audio
from srnn import checkpoint, names
from srnn.errors import SrnnError, run_cli

SMALL = ["--dim=16", "--slowdim=16", "--cutlen=256"]


@pytest.fixture(scope="module")
def parts(mini_root, tmp_path_factory):
    """This module's own copy of the mini corpus (its tests write checkpoints next to it)."""
    root = tmp_path_factory.mktemp("work")
    shutil.copytree(mini_root, root, dirs_exist_ok=True)
    return root


@pytest.fixture
def work(parts, tmp_path):
    """A private copy of the working folder, free to damage."""
    shutil.copytree(parts, tmp_path, dirs_exist_ok=True)
    return tmp_path


def mini(*args, cwd, **kw):
    return run_tool("train_srnn.py", "--exp=mini", *SMALL, "--batchsize=2", "--trainstop=4", "--validstop=6",
                    *args, cwd=cwd, **kw)


@pytest.fixture(scope="module")
def model_file(parts, base_run):
    """One trained checkpoint to sample from and to damage: epoch 0 of the shared run, which is
    what `mini("--nepochs=1")` writes (the same flags and seed), without training again."""
    path = parts / "mini_srnn_sz16_e0.h5"
    shutil.copy(base_run[0] / path.name, path)
    return path


@pytest.fixture(scope="module")
def fresh_file(parts):
    """An untrained checkpoint of the mini runs' model (no training state): enough for the rows
    that fail before generating or training, so they need no trained model."""
    from conftest import MINI_CFG
    from srnn.config import ModelConfig
    from srnn.model import SampleRNN

    path = parts / "fresh_srnn_sz16.h5"
    checkpoint.save(str(path), SampleRNN(ModelConfig(**MINI_CFG)))
    return path


# ---- preprocess rows not already in test_preprocess.py

def test_preprocess_only_corrupt_empty_and_non_audio(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "a.wav").write_bytes(os.urandom(300))
    write_audio(str(d / "b.wav"), np.zeros(0), 16000)
    (d / "c.txt").write_text("text")
    assert_clean_error(run_tool("preprocess.py", d), "none of the 2 audio files")
    assert not (tmp_path / "d_parts").exists()


def test_preprocess_absurd_numbers(tmp_path):
    write_audio(str(tmp_path / "d" / "a.wav"), tone(100, 2, 16000), 16000)
    for flags, words in [(["--seconds", "inf"], ["--seconds inf", "one hour"]),
                         (["--seconds", "1e-5"], ["--seconds 1e-05", "64 samples"]),
                         (["--seconds", "1e-300"], ["--seconds 1e-300"]),
                         (["--seconds", "nan"], ["--seconds nan"]),
                         (["--samplerate", "1000000000000"], ["--samplerate 1000000000000", "192000"])]:
        assert_clean_error(run_tool("preprocess.py", tmp_path / "d", *flags), *words)
    assert not (tmp_path / "d_parts").exists()


def test_preprocess_scales_a_float_file_beyond_full_scale(tmp_path):
    sine = tone(200, 1, 16000, amp=45.7)
    write_audio(str(tmp_path / "d" / "loud.wav"), sine, 16000, subtype="FLOAT")
    proc = run_tool("preprocess.py", tmp_path / "d", "--seconds", 1)
    assert proc.returncode == 0, proc.stderr
    assert "loud.wav peaks at 45.7, beyond full scale: scaled by 1/45.7, not clipped" in proc.stderr
    part, _ = sf.read(str(tmp_path / "d_parts" / "p0.wav"))
    assert np.mean(np.abs(part) > 0.99) < 0.1  # a full-scale sine has 7.5 % there; clipped, 98 %
    assert np.corrcoef(part, sine)[0, 1] > 0.999


def test_preprocess_output_not_writable(tmp_path):
    write_audio(str(tmp_path / "d" / "a.wav"), tone(100, 9, 16000), 16000)
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    assert_clean_error(run_tool("preprocess.py", tmp_path / "d", "--out", blocker / "parts"), "cannot write to")
    assert_clean_error(run_tool("preprocess.py", tmp_path / "d", "--out", blocker), "not a folder")


# ---- train rows

def test_train_prompts_missing(work):
    os.unlink(work / "blizzard" / "mini_parts" / "prompts.txt")
    assert_clean_error(mini(cwd=work), "prompts.txt not found", "preprocess.py")


def test_train_prompts_names_a_missing_wav(work):
    os.unlink(work / "blizzard" / "mini_parts" / "p1.wav")
    assert_clean_error(mini("--nepochs=1", cwd=work), "p1.wav", "missing")


def test_train_part_with_other_rate_or_channels(work):
    write_audio(str(work / "blizzard" / "mini_parts" / "p2.wav"), tone(100, 1, 8000), 8000)
    assert_clean_error(mini("--nepochs=1", cwd=work), "p2.wav", "8000 Hz", "16000 Hz mono")
    write_audio(str(work / "blizzard" / "mini_parts" / "p2.wav"), tone(100, 1, 16000, channels=2), 16000)
    assert_clean_error(mini("--nepochs=1", cwd=work), "p2.wav", "2 channel")


@pytest.mark.parametrize("flags, words", [
    (["--trainstop=4", "--validstop=20"], ["--validstop=20", "10 lines"]),
    (["--trainstop=30", "--validstop=40"], ["--trainstop=30", "10 lines"]),
    (["--trainstop=6", "--validstop=4"], ["before --trainstop"]),
    (["--trainstop=4", "--validstop=5"], ["validation split has 1 file", "--batchsize"]),
    (["--trainstop=1", "--validstop=6"], ["training split has 1 file"]),
    (["--cutlen=100"], ["--cutlen=100", "multiple of 8"]),
    (["--dim=0"], ["--dim=0", "positive"]),
    (["--slowdim=-4"], ["--slowdim=-4", "positive"]),
    (["--batchsize=0"], ["--batchsize=0", "positive"]),
    (["--nepochs=-1"], ["--nepochs=-1", "positive"]),
    (["--patience=-1"], ["--patience"]),
    # the architecture flags (checked before TensorFlow loads, as every row here)
    (["--frames", "0"], ["--frames 0", "positive"]),
    (["--frames", "8,3"], ["--frames 8,3", "8 is not a multiple of 3"]),
    (["--frames", "2,8"], ["--frames 2,8", "shrink"]),
    (["--frames", "8;2"], ["--frames 8;2", "commas"]),
    (["--frames", "16,4", "--cutlen=264"], ["--cutlen=264", "multiple of 16", "--frames"]),
    (["--rnn-layers=0"], ["--rnn-layers=0"]),
    (["--q-levels=1"], ["--q-levels=1", "between 2"]),
    (["--rnn", "rnn", "--skip"], ["--rnn rnn", "gru, lstm"]),
    (["--emb-size=0"], ["--emb-size=0", "positive"]),
    (["--learning-rate=0"], ["--learning-rate=0", "positive"]),
    (["--learning-rate=nan"], ["--learning-rate=nan", "positive and finite"]),
    (["--dim=100000"], ["needs about", "GB of memory, this machine has", "lower --dim"]),
])
def test_train_bad_flags(parts, flags, words):
    proc = mini(*flags, cwd=parts)
    assert_clean_error(proc, *words)


def test_train_folder_not_writable(parts):
    # /proc refuses new files even to root, for whom a read-only permission bit means nothing
    proc = run_tool("train_srnn.py", "--exp=mini", *SMALL, cwd="/proc")
    assert_clean_error(proc, "cannot write checkpoints to /proc")


NO_FRAMEWORK = """
import sys
from srnn.cli import train_main
from srnn.errors import run_cli
code = run_cli(train_main, sys.argv[1:])
print(code, sorted(m for m in ("tensorflow", "keras", "jax", "torch") if m in sys.modules))
"""


def test_train_errors_come_before_tensorflow_loads(parts):
    """A bad input is refused before any deep-learning framework is imported (seconds, not the
    tens of seconds TensorFlow takes to load): checked in a fresh interpreter."""
    proc = subprocess.run([sys.executable, "-c", NO_FRAMEWORK, "--exp=mini", *SMALL, "--trainstop=6",
                           "--validstop=4"], cwd=parts, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": ROOT})
    assert "before --trainstop" in proc.stderr and proc.stdout.split() == ["2", "[]"], proc.stdout + proc.stderr


# ---- load / sample rows

def test_sample_file_problems(fresh_file, tmp_path):
    half = tmp_path / "half.h5"
    half.write_bytes(fresh_file.read_bytes()[: fresh_file.stat().st_size // 2])
    (tmp_path / "text.h5").write_text("not hdf5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["data"] = np.arange(3)
    for name, words in [("missing.h5", ["missing.h5", "not found"]), ("text.h5", ["text.h5", "HDF5"]),
                        ("half.h5", ["half.h5", "truncated"]), ("other.h5", ["other.h5", "not an srnn checkpoint"])]:
        assert_clean_error(run_tool("train_srnn.py", f"--sample={tmp_path / name}", cwd=tmp_path), *words)
        assert_clean_error(mini(f"--load={tmp_path / name}", cwd=fresh_file.parent), *words)
    assert not list(tmp_path.glob("generated*"))


def test_sample_bad_flags(fresh_file, tmp_path):
    f = f"--sample={fresh_file}"
    junk = tmp_path / "junk.wav"
    junk.write_bytes(os.urandom(500))
    rows = [
        (["--dim=64"], ["dim=16", "dim=64"]),
        (["--prime", tmp_path / "nope.wav"], ["--prime", "not found"]),
        (["--prime", junk], ["--prime", "junk.wav", "cannot be read"]),
        (["--seconds=0"], ["--seconds=0", "positive"]),
        (["--seconds=-2"], ["--seconds=-2", "positive"]),
        (["--seconds=nan"], ["--seconds=nan", "positive and finite"]),
        (["--seconds=inf"], ["--seconds=inf", "positive and finite"]),
        (["--seconds=1e-9"], ["--seconds=1e-09", "less than one sample"]),
        (["--seconds=1e6"], ["--seconds 1e+06", "longer than a WAV file holds (37 hours at 16000 Hz)"]),
        (["--prime", tmp_path], ["--prime", "is a folder"]),
        (["--qtype", "mu-law"], ["--qtype linear, not mu-law"]),
        (["--temperature", "0"], ["--temperature", "positive"]),
        (["--temperature", "-1"], ["--temperature", "positive"]),
        (["--nseqs=2", "--temperature", "1", "1", "1"], ["3 values"]),
    ]
    for flags, words in rows:
        assert_clean_error(run_tool("train_srnn.py", f, *flags, cwd=tmp_path), *words)
    assert not list(tmp_path.glob("generated*"))
    # where the outputs cannot go, before anything is generated: a read-only folder (/proc), a
    # folder in the place of a file
    assert_clean_error(run_tool("train_srnn.py", f, cwd="/proc"), "cannot write generated.wav to /proc")
    (tmp_path / "generated_1.png").mkdir()
    assert_clean_error(run_tool("train_srnn.py", f, "--nseqs=2", cwd=tmp_path), "generated_1.png", "Is a directory")


# ---- interruption

def test_sigterm_is_handled_as_sigint():
    """SIGTERM (what schedulers send) takes the same path as the SIGINT run below, exit 143."""
    from srnn.training import Pass, StopRequest, _interrupted

    with StopRequest(lambda *a: None):
        assert signal.getsignal(signal.SIGTERM) == signal.getsignal(signal.SIGINT)
        assert callable(signal.getsignal(signal.SIGTERM))
    assert _interrupted(signal.SIGTERM, 1, Pass(), "x.h5").exit_code == 143


# the signal run's chunks: 126 steps an epoch (4 parts of 4000 samples, two at a time, in chunks of
# 64), so that the signal sent when epoch 0 ends lands inside epoch 1 on a fast machine too
LONG_EPOCH = ["--cutlen=64", "--batchsize=2"]


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130)])
def test_signal_saves_a_resumable_checkpoint(work, sig, code, no_xla):
    proc = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "train_srnn.py"), "--exp=mini", *SMALL, *LONG_EPOCH,
         "--trainstop=4", "--validstop=6", "--nepochs=50"],
        cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        for line in proc.stdout:  # wait until training runs (the first epoch has begun)
            if line.startswith("Epoch 0 took"):
                break
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == code, err
    assert "Traceback" not in err
    assert any(line.startswith("interrupted: stopped by") for line in err.splitlines()), err
    saved = work / "mini_srnn_sz16_interrupted.h5"
    ckpt = checkpoint.load(str(saved))
    assert "next_batch" in ckpt.train and ckpt.train["epoch"] == 0  # stopped inside epoch 1
    # its weights are epoch 1's so far, not the best epoch's (0): the test loss and an export would
    # take the best epoch's from its own file
    from srnn.options import TrainOptions
    from srnn.training import Trainer

    opts = TrainOptions(exp="mini", nepochs=2, batchsize=2, trainstop=4, validstop=6, cutlen=64, load=str(saved),
                        parts_root=str(work / "blizzard"), out_dir=str(work))
    trainer = Trainer(ckpt.config, opts, log=lambda *a: None, ckpt=ckpt)
    assert trainer.resume is not None and trainer.best == 0 and trainer.best_weights is None
    if sig == signal.SIGINT:  # resuming is the same for both signals; run it once (here, without XLA)
        resumed = mini(f"--load={saved}", "--nepochs=2", *LONG_EPOCH, cwd=work)
        assert resumed.returncode == 0, resumed.stderr
        assert "resuming from" in resumed.stdout and "Epoch 1 valid loss in bits" in resumed.stdout


# ---- a full disk (a file-size limit stands in for it: writes past it fail with EFBIG)

def limited(limit, *args, cwd):
    """train_srnn.py in this process (conftest.run_tool) while no file may grow past `limit` bytes:
    a write past it fails with EFBIG, as on a full disk (Python ignores SIGXFSZ, which would
    otherwise end the process). The limit is this process's, and lifted again after the run."""
    saved = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, saved[1]))
    try:
        return run_tool("train_srnn.py", *args, cwd=cwd)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, saved)


@pytest.mark.slow
def test_full_disk_keeps_every_checkpoint_and_says_so(work, model_file, no_xla):
    e0 = work / "mini_srnn_sz16_e0.h5"
    shutil.copy(model_file, e0)
    before = e0.read_bytes()
    proc = limited(100_000, "--exp=mini", *SMALL, "--batchsize=2", "--trainstop=4", "--validstop=6",
                   f"--load={e0}", "--nepochs=2", cwd=work)
    err = assert_clean_error(proc, "cannot write", "mini_srnn_sz16_", "the disk may be full")
    assert proc.returncode == 2, err
    assert e0.read_bytes() == before and checkpoint.load(str(e0)).train["epoch"] == 0
    assert not [p.name for p in work.iterdir() if ".tmp" in p.name]  # no temporary left behind
    # sampling into the full disk: the same one line, no half-written generated.wav
    # the levels wait in a temporary file (2 bytes a sample), which fits; the WAV (44 more) does not
    proc = limited(2 * 16000 + 20, f"--sample={e0}", "--seconds=1", cwd=work)
    assert_clean_error(proc, "cannot write", "generated.wav", "the disk may be full")
    assert not list(work.glob("generated*")) and not [p.name for p in work.iterdir() if ".tmp" in p.name]
    (work / "generated.wav").mkdir()  # a folder where the output goes
    assert_clean_error(run_tool("train_srnn.py", f"--sample={e0}", "--seconds=0.1", cwd=work),
                       "cannot write", "generated.wav", "Is a directory")


# ---- NaN

@pytest.mark.slow
def test_non_finite_loss_stops_and_keeps_the_good_checkpoint(work, model_file, no_xla):
    e0 = work / "mini_srnn_sz16_e0.h5"  # a good checkpoint, as training left it
    shutil.copy(model_file, e0)
    before = e0.read_bytes()
    bad = work / "bad.h5"
    shutil.copy(e0, bad)
    with h5py.File(bad, "r+") as f:  # a finite but absurd gain: the activations overflow to inf
        g = f["weights/sample/h1/g"]
        g[...] = np.full(g.shape, 3e38, np.float32)
    proc = mini(f"--load={bad}", "--nepochs=3", cwd=work)
    assert proc.returncode == 3
    err = assert_clean_error(proc, "loss became")
    assert "no checkpoint was written" in err
    assert e0.read_bytes() == before
    assert not (work / "mini_srnn_sz16_e1.h5").exists() and not (work / "mini_srnn_sz16_e2.h5").exists()
    checkpoint.load(str(e0))  # the good one still loads


# ---- degenerate audio

@pytest.mark.slow
def test_silent_constant_and_clipped_audio_train_and_sample(tmp_path):
    from srnn.config import ModelConfig
    from srnn.model import SampleRNN
    from srnn.generation import generate_levels
    from srnn.quantize import to_audio
    from srnn.training import TrainOptions, train

    d = tmp_path / "blizzard" / "odd_parts"
    sr, n = 16000, 4000
    square = np.sign(np.sin(2 * np.pi * 200 * np.arange(n) / sr))
    signals = [np.zeros(n), np.full(n, 0.3), square, np.clip(3 * tone(300, n / sr, sr), -1, 1), np.zeros(n), square]
    for i, x in enumerate(signals):
        write_audio(str(d / f"p{i}.wav"), x, sr)
    (d / "prompts.txt").write_text("".join(names.prompt_line(i) for i in range(len(signals))))
    cfg = ModelConfig(slowdim=16, dim=16)
    history = train(cfg, TrainOptions(exp="odd", nepochs=2, batchsize=2, trainstop=4, validstop=6, cutlen=256,
                                      xla=False, parts_root=str(tmp_path / "blizzard"), out_dir=str(tmp_path)),
                    log=lambda *a: None)
    assert np.all(np.isfinite(history["train_bits"] + history["valid_bits"]))
    model = SampleRNN(cfg)
    checkpoint.apply_weights(checkpoint.load(str(tmp_path / "odd_srnn_sz16_e1.h5")), model)
    levels, logp = generate_levels(model.sampler(), 2, 4000)
    assert np.all(np.isfinite(logp)) and np.all(np.isfinite(to_audio(levels[0], "linear", 256)))


# ---- fuzz

def test_fuzz_preprocess_and_loading(tmp_path):
    """Random bytes and random WAVs: every outcome is a clean result or a clean SrnnError."""
    rng = np.random.default_rng(2024)
    for trial in range(12):
        d = tmp_path / f"f{trial}"
        d.mkdir()
        for k in range(rng.integers(1, 4)):
            kind = rng.integers(0, 3)
            if kind == 0:  # random bytes under an audio name
                (d / f"r{k}.wav").write_bytes(rng.bytes(int(rng.integers(0, 2000))))
            elif kind == 1:  # a valid header with random-length, random-valued samples
                sf.write(str(d / f"w{k}.wav"), rng.uniform(-4, 4, int(rng.integers(0, 40000))),
                         int(rng.choice([8000, 16000, 22050, 44100])), subtype="FLOAT")
            else:  # a real header, then garbage
                sf.write(str(d / f"t{k}.wav"), rng.uniform(-1, 1, 5000), 16000)
                data = (d / f"t{k}.wav").read_bytes()
                (d / f"t{k}.wav").write_bytes(data[:44] + rng.bytes(len(data) - 44))
        code = run_cli(__import__("srnn.cli", fromlist=["preprocess_main"]).preprocess_main,
                       [str(d), "--seconds", "0.5"])
        assert code in (0, 2)
        if code == 0:
            for p in (tmp_path / f"f{trial}_parts").glob("p*.wav"):
                assert sf.info(str(p)).frames == 8000
        blob = tmp_path / f"blob{trial}.h5"
        blob.write_bytes(rng.bytes(int(rng.integers(0, 5000))))
        with pytest.raises(SrnnError):
            checkpoint.load(str(blob))


# ---- two runs at once

HOLD = """
import sys, time
sys.path.insert(0, sys.argv[1])
from srnn.lock import exclusive
with exclusive(sys.argv[2], "x", "y"):
    print("held", flush=True)
    time.sleep(120)
"""


def test_a_second_run_on_the_same_output_is_refused(work):
    """A lock on the parts folder (preprocess) and on the experiment's checkpoint names (training):
    the second run says which process holds it, and touches nothing."""
    from srnn import names

    parts = work / "blizzard" / "mini_parts"
    before = sorted(p.name for p in parts.iterdir())
    checkpoints = sorted(work.glob("*.h5"))
    for lock, proc_args, words in [
        (names.parts_lock(str(parts)), ("preprocess.py", ROOT + "/blizzard/tiny", "--out", parts, "--force"),
         ["mini_parts is in use by process"]),
        (names.train_lock(str(work), "mini", 16), ("train_srnn.py", "--exp=mini", *SMALL, "--batchsize=2",
                                                   "--trainstop=4", "--validstop=6"),
         ["--exp mini", "in use by process"]),
    ]:
        holder = subprocess.Popen([sys.executable, "-c", HOLD, ROOT, lock], stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout.readline().strip() == "held"
            err = assert_clean_error(run_tool(*proc_args, cwd=work), *words)
            assert str(holder.pid) in err
        finally:
            holder.kill()
            holder.wait()
    assert sorted(p.name for p in parts.iterdir()) == before
    assert sorted(work.glob("*.h5")) == checkpoints


@pytest.mark.slow
def test_kill_9_at_any_moment_loses_nothing_saved(work):
    """SIGKILL at several moments of a run that saves a checkpoint every epoch (some land inside a
    checkpoint write): every .h5 left loads, and the next start removes the temporary files."""
    args = [sys.executable, os.path.join(ROOT, "train_srnn.py"), "--exp=mini", *SMALL, "--cutlen=1024",
            "--batchsize=2", "--trainstop=4", "--validstop=6", "--svepoch=1", "--nepochs=1000"]
    for delay in (0.05, 0.4):  # two moments after a save: in training, or in the next save
        proc = subprocess.Popen(args, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            for line in proc.stdout:
                if line.startswith("saved"):  # checkpoints are being written, one per epoch
                    break
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait()
        for path in work.glob("*.h5"):
            checkpoint.load(str(path))  # raises on a damaged file
    (work / ".mini_srnn_sz16_e7.abc123.tmp.h5").write_bytes(b"half a checkpoint")
    proc = subprocess.Popen(args, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        # (one made here, and any that a kill above left inside a checkpoint write)
        assert re.match(r"note: removed [1-9]\d* temporary file\(s\) left by an interrupted run", proc.stdout.readline())
    finally:
        proc.kill()
        proc.wait()
    assert not [p.name for p in work.iterdir() if ".tmp" in p.name]
