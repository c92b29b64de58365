"""The README's commands on the shipped demo: preprocess, the original's tiny training, sampling."""
import re
import shutil

import numpy as np
import pytest
import soundfile as sf

from conftest import DEMO, assert_clean_error, run_script, run_tool

pytestmark = pytest.mark.slow  # each test runs the scripts or TensorFlow in new processes

TINY = ["--exp=tiny", "--slowdim=32", "--dim=32", "--cutlen=512", "--batchsize=2", "--validstop=6", "--trainstop=4"]


def test_demo_preprocess_train_sample(tmp_path):
    """The README's first command as a user runs it: each script in its own interpreter."""
    shutil.copytree(DEMO, tmp_path / "blizzard" / "tiny")
    pre = run_script("preprocess.py", "blizzard/tiny", cwd=tmp_path)
    assert pre.returncode == 0, pre.stderr
    assert len(list((tmp_path / "blizzard" / "tiny_parts").glob("p*.wav"))) >= 7

    train = run_script("train_srnn.py", *TINY, cwd=tmp_path)
    assert train.returncode == 0, train.stdout[-2000:] + train.stderr[-2000:]
    out = train.stdout
    assert "Total params" in out  # the model summary
    train_bits = [float(v) for v in re.findall(r"Epoch \d+ training loss in bits ([\d.]+)", out)]
    valid_bits = [float(v) for v in re.findall(r"Epoch \d+ valid loss in bits ([\d.]+)", out)]
    assert len(train_bits) == len(valid_bits) == 10
    assert len(re.findall(r"Epoch \d+ took [\d.]+ seconds", out)) == 10
    assert all(0 < b < 8.5 for b in train_bits + valid_bits)
    assert train_bits[-1] <= train_bits[0] - 1.0, train_bits  # the original went 3.98 -> 2.30
    assert (tmp_path / "tiny_srnn_sz32_e9.h5").exists()
    assert (tmp_path / "costs.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Traceback" not in train.stderr and "absl" not in train.stderr

    sample = run_script("train_srnn.py", *TINY, "--sample=tiny_srnn_sz32_e9.h5", cwd=tmp_path)
    assert sample.returncode == 0, sample.stderr
    x, sr = sf.read(str(tmp_path / "generated.wav"))
    assert sr == 16000 and x.shape == (64000,)
    assert x.std() > 0.01  # not silent
    assert len(np.unique(x)) > 20  # not constant, not a few stuck levels
    assert np.abs(x).max() <= 0.476

    # (sampling with no size flags is run on the ready model in test_features.py)
    assert_clean_error(run_tool("train_srnn.py", "--dim=64", "--sample=tiny_srnn_sz32_e9.h5", cwd=tmp_path),
                       "dim=32", "dim=64")


def test_train_without_parts_says_run_preprocess(tmp_path):
    assert_clean_error(run_tool("train_srnn.py", *TINY, cwd=tmp_path), "preprocess.py blizzard/tiny")
