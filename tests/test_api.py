"""srnn from Python: srnn.load / Model.generate / score / srnn.train / write_wav against
what train_srnn.py writes and says for the same arguments."""
import os
import re
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest
import soundfile as sf

import srnn
from conftest import MINI_CFG, ROOT, run_tool, tone, write_audio
from srnn.errors import SrnnError

ONE_LSB = 1.0 / 32768  # a 16-bit WAV's rounding


@pytest.fixture(scope="module")
def models(small_checkpoints):
    return small_checkpoints


def cli_error(tmp_path, *argv):
    """The one line train_srnn.py prints for a mistake, without its `error: `."""
    proc = run_tool("train_srnn.py", *argv, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    return proc.stderr[len("error: "):].rstrip("\n")


@pytest.mark.slow  # generation / training / a new interpreter
def test_import_srnn_and_load_import_no_framework():
    """`import srnn` and srnn.load read and check a model with h5py and NumPy only: a notebook
    pays for TensorFlow or JAX when a model first runs."""
    code = ("import sys, srnn; m = srnn.load('models/demo_srnn_sz128.h5'); "
            "assert issubclass(srnn.SrnnError, ValueError) and m.sample_rate == 16000, m; "
            "print(sorted(k for k in ('tensorflow', 'jax', 'keras', 'torch') if k in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout == "[]\n"


@pytest.mark.slow  # a CLI generation and the API's
@pytest.mark.parametrize("case", ["plain", "primed", "labelled"])
def test_generate_gives_the_clis_audio(models, tmp_path, case):
    """The same arguments, the same audio: Model.generate's rows are the WAVs --sample writes, to
    16-bit rounding (the seed's draws, the temperatures per sequence, the primer opening every
    sequence, a conditioned model's labels in the files' order, the scaling)."""
    primer = tone(330, 0.0303, 16000, amp=0.3)  # 485 samples: not a whole number of big frames
    write_audio(tmp_path / "primer.wav", primer, 16000)
    argv = {"plain": ["--nseqs=2", "--temperature", "0.9", "1.2", "--seed=7", "--prime="],  # (empty: no primer)
            "primed": ["--nseqs=2", "--prime=primer.wav", "--scaling=minmax"],
            "labelled": []}[case]
    model_path = models["labelled" if case == "labelled" else "plain"]
    proc = run_tool("train_srnn.py", f"--sample={model_path}", "--seconds=0.04", *argv, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    files = {"plain": ["generated_0.wav", "generated_1.wav"], "primed": ["generated_0.wav", "generated_1.wav"],
             "labelled": ["generated_a.wav", "generated_b.wav"]}[case]
    written = np.stack([sf.read(str(tmp_path / f), dtype="float64")[0] for f in files])

    model = srnn.load(model_path)
    kwargs = {"plain": dict(n=2, temperature=np.array([0.9, 1.2]), seed=np.int64(7)),
              "primed": dict(n=2, prime=str(tmp_path / "primer.wav"), scaling="minmax"),
              "labelled": {}}[case]
    said = []
    audio = model.generate(0.04, progress=lambda *a: said.append(a), **kwargs)
    assert said[-1] == ("generated", 0.04, 0.04) and all(done <= total for _, done, total in said)
    if case == "primed":
        assert said[0][0] == "primed" and said[0][1] == said[0][2] == len(primer) / 16000
    assert audio.dtype == np.float32 and audio.shape == written.shape
    np.testing.assert_allclose(audio, written, atol=ONE_LSB)
    assert not np.allclose(audio[0], audio[1], atol=10 * ONE_LSB)  # two sequences, not one twice
    if case == "primed":  # an array at the model's rate primes as its file does (the file's samples)
        samples = sf.read(str(tmp_path / "primer.wav"), dtype="float32")[0]
        np.testing.assert_array_equal(model.generate(0.04, n=2, prime=samples, scaling="minmax"), audio)
        assert written.shape[1] == len(primer) + 640
        for row in written:  # the primer, quantised and rescaled, then the continuation
            assert np.corrcoef(row[:len(primer)], primer)[0, 1] > 0.99


BAD = [  # (the API's arguments, the command line's, the model)
    (dict(temperature=-1.0), ["--temperature", "-1"], "plain"),
    (dict(n=3, temperature=[1.0, 2.0]), ["--nseqs=3", "--temperature", "1", "2"], "plain"),
    (dict(seconds=1e-6), ["--seconds=1e-6"], "plain"),
    (dict(seconds=-1.0), ["--seconds=-1"], "plain"),
    (dict(n=0), ["--nseqs=0"], "plain"),
    (dict(seed=-1), ["--seed=-1"], "plain"),
    (dict(label="a"), ["--label", "a"], "plain"),
    (dict(label="c"), ["--label", "c"], "labelled"),
    (dict(label="a:0"), ["--label", "a:0"], "labelled"),
    (dict(n=3, label=["a", "b"]), ["--nseqs=3", "--label", "a", "b"], "labelled"),
    (dict(prime="missing.wav"), ["--prime=missing.wav"], "plain"),
    (dict(prime="."), ["--prime=."], "plain"),
]


@pytest.mark.parametrize("api,argv,which", BAD, ids=[" ".join(b[1]) for b in BAD])
def test_bad_arguments_raise_the_clis_message(models, tmp_path, monkeypatch, api, argv, which):
    """The same words for the same mistake, each naming the option as its caller knows it: the
    Python parameter (`n`) from Python, the flag (`--nseqs`) on the command line."""
    message = cli_error(tmp_path, f"--sample={models[which]}", *argv)
    monkeypatch.chdir(tmp_path)
    model = srnn.load(models[which])
    api = {"seconds": 0.01, **api}
    with pytest.raises(SrnnError) as e:
        model.generate(**api)
    python = str(e.value)
    assert "--" not in python and python != message
    flags = {"n": "--nseqs"}  # the one parameter here whose flag is not its name with dashes
    words = python
    for name in sorted(api, key=len, reverse=True):
        words = re.sub(rf"\b{name}\b(?=[ =:])", flags.get(name, f"--{name}"), words, count=1)
    assert words == message


def test_bad_files_and_settings_are_one_line_errors(models, tmp_path):
    assert str(pytest.raises(SrnnError, srnn.load, tmp_path / "none.h5").value) == \
        cli_error(tmp_path, f"--sample={tmp_path / 'none.h5'}")
    broken = tmp_path / "nan.h5"
    shutil.copy(models["plain"], broken)
    with h5py.File(broken, "r+") as f:
        arrays = []
        f["weights"].visititems(lambda name, obj: arrays.append(obj) if isinstance(obj, h5py.Dataset) else None)
        arrays[0][...] = np.nan
    assert str(pytest.raises(ValueError, srnn.load, broken).value) == cli_error(tmp_path, f"--sample={broken}")

    # a checkpoint is read one way, its values checked as it is read: before the flags that need it,
    # after those that do not
    assert "NaN" in cli_error(tmp_path, f"--sample={broken}", "--qtype=mu-law")
    assert "--temperature" in cli_error(tmp_path, f"--sample={broken}", "--temperature=-1")

    model = srnn.load(models["plain"])
    assert model.request(0.01, temperature=np.array(0.9)).temps == [0.9]
    for kwargs, words in ((dict(precision="float64"), "precision float64: choose one of"),
                          (dict(layout="csr"), "layout csr"), (dict(scaling="loud"), "scaling loud"),
                          (dict(prime=np.zeros((2, 2))), "prime: give a file name"),
                          (dict(prime=[np.nan]), "prime (the array)"), (dict(seed=1.5), "seed=1.5"),
                          (dict(n=2.0), "n=2.0 must be a whole number"), (dict(temperature=True), "temperature")):
        with pytest.raises(SrnnError, match="^" + re.escape(words)):
            model.generate(0.01, **kwargs)
    with pytest.raises(SrnnError, match="give label="):
        srnn.load(models["labelled"]).score(np.zeros(64))
    for audio, rate in (([[0.0]], 16000), ([np.inf], 16000), ([0.0], 0), (np.int16([1000, -1000]), 16000)):
        with pytest.raises(SrnnError, match="write_wav"):
            srnn.write_wav(tmp_path / "x.wav", audio, rate)
    assert not (tmp_path / "x.wav").exists()
    srnn.write_wav(tmp_path / "x.wav", np.float32([0.5, -0.25]), np.int64(8000))
    assert sf.read(str(tmp_path / "x.wav"))[0].tolist() == [0.5, -0.25]


def test_numbers_beyond_float32_or_a_wav_are_refused(tmp_path):
    """score looks at the audio in float32, as the model reads it (1e300 was scored, not refused);
    write_wav's rate must fit a WAV's 32-bit byte rate (2**31 was an OverflowError)."""
    model = srnn.load(os.path.join(ROOT, "models", "demo_srnn_sz128.h5"))
    with pytest.raises(SrnnError, match="^score: give a 1-D array of finite samples at 16000 Hz"):
        model.score(tone(220, 0.05, 16000, amp=0.4).astype(np.float64) * 1e300)
    for rate in (2 ** 31, 10 ** 12, np.uint64(2 ** 32)):
        words = f"write_wav: a WAV holds rates up to 2147483647 Hz, got {rate!r}"
        with pytest.raises(SrnnError, match=re.escape(words)):
            srnn.write_wav(tmp_path / "x.wav", np.float32([0.5, -0.25]), rate)
    assert not (tmp_path / "x.wav").exists()
    srnn.write_wav(tmp_path / "x.wav", np.float32([0.5, -0.25]), 2 ** 31 - 1)
    assert sf.info(str(tmp_path / "x.wav")).samplerate == 2 ** 31 - 1


def test_text_given_for_a_number_is_quoted():
    """n='2' is text: the message shows it quoted, not as the valid number 2 (numbers as before)."""
    model = srnn.load(os.path.join(ROOT, "models", "demo_srnn_sz128.h5"))
    for kwargs, words in ((dict(n="2"), "n='2' must be a whole number"),
                          (dict(seconds="1"), "seconds='1' must be positive and finite"),
                          (dict(seed="7"), "seed='7' must be a whole number"),
                          (dict(temperature=[0.9, "1"], n=2), "temperature must be positive, got 0.9 '1'"),
                          (dict(n=2.5), "n=2.5 must be a whole number")):
        kwargs = {"seconds": 0.01, **kwargs}
        with pytest.raises(SrnnError, match=f"^{re.escape(words)}$"):
            model.generate(**kwargs)


def test_score_is_the_training_loss_of_the_signal(models):
    """bits per sample as training computes them for a part that is this signal alone: quantised
    as a part is, a big frame of silence before it, from the learned initial state."""
    from srnn.model import loss_bits
    from srnn.quantize import Q_ZERO, quantize

    model = srnn.load(models["labelled"])
    audio = tone(220, 0.05, 16000, amp=0.4) + 0.01
    net, bf = model.network, model.config.big_frame
    x = np.concatenate([np.full(bf, Q_ZERO, np.int32), quantize(audio)])[None]
    mix = np.array([[0.0, 1.0]], np.float32)
    logits, _ = net.forward(x, net.zero_states(1), 1.0, mix)
    expected = float(loss_bits(logits, x[:, bf:], np.ones((1, len(audio)), np.float32)))
    assert model.score(audio, label="b") == pytest.approx(expected, rel=1e-4)
    assert model.score(audio, label="a") != model.score(audio, label="b")  # the label is used


@pytest.mark.slow  # generation / training / a new interpreter
def test_train_from_python_is_the_commands_training(mini_root, base_run, tmp_path, monkeypatch):
    """srnn.train with the options as keywords runs the command's training: its defaults (seed 1337),
    its files, the same losses as the shared run of those settings; a wrong option is one line
    naming the Python parameter."""
    shutil.copytree(mini_root / "blizzard", tmp_path / "blizzard")
    monkeypatch.chdir(tmp_path)
    lines = []
    history = srnn.train("mini", log=lines.append, nepochs=1, batchsize=2, trainstop=4, validstop=6, cutlen=256,
                         **MINI_CFG)
    np.testing.assert_allclose(history["train_bits"], base_run[1]["train_bits"][:1], rtol=1e-5)
    assert np.isfinite(history["test_bits"]) and any(line.startswith("Test loss in bits") for line in lines)
    assert (tmp_path / "mini_srnn_sz16_e0.h5").is_file() and (tmp_path / "costs.png").is_file()
    for options, words in ((dict(dimm=3), "unknown option(s) dimm"), (dict(dim="x"), "dim='x' must be a whole"),
                           (dict(dim=-2), "dim=-2 must be positive"), (dict(sample="a.h5"), "srnn.load"),
                           (dict(help=True), "unknown option(s) help"), (dict(dim=[2, 3]), "dim=[2, 3] must be"),
                           (dict(audition_seqs=0), "audition_seqs=0"), (dict(frames="8;2"), "frames 8;2")):
        with pytest.raises(SrnnError, match=re.escape(words)):
            srnn.train("mini", **options)


@pytest.mark.slow  # generation / training / a new interpreter
def test_readme_from_python_example_runs(tmp_path, monkeypatch):
    """The README's "From Python" example, as written there, in a folder of its own."""
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    section = readme[readme.index("\n## From Python"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    os.symlink(os.path.join(ROOT, "models"), tmp_path / "models")
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    x, sr = sf.read(str(tmp_path / "first.wav"))
    assert sr == 16000 and len(x) == namespace["audio"].shape[1]


def test_notebook_views(models):
    model = srnn.load(models["labelled"])
    assert "slowdim" in model._repr_html_() and "<table>" in model._repr_html_()
    assert repr(model).startswith("<srnn.Model ") and "labels a,b" in repr(model)
    try:
        import IPython  # noqa: F401  (optional)
    except ImportError:
        with pytest.raises(SrnnError, match="pip install ipython"):
            srnn.play(np.zeros(10), 16000)
    else:
        assert srnn.play(np.zeros(10), 16000).data[:4] == b"RIFF"
