"""The whole tool through its command line on JAX, in this process where TensorFlow cannot be
imported (SRNN_HIDE_TENSORFLOW: tests/conftest.py's hide_tensorflow), as on a GPU machine that has
JAX alone."""
import importlib.util
import re
import shutil

import numpy as np
import soundfile as sf

from conftest import assert_clean_error, run_tool
from srnn import checkpoint

SMALL = ["--exp=mini", "--slowdim=16", "--dim=16", "--cutlen=64", "--batchsize=2", "--trainstop=4",
         "--validstop=6", "--svepoch=1"]


def test_train_resume_and_sample_on_jax_without_tensorflow(mini_root, tmp_path):
    """Two epochs with an audition, the best checkpoint and the test loss; --load of epoch 0 and one
    more epoch gives the two-epoch run's losses (the steps' weights and Adam's state go through the
    file); --sample with --nseqs and --prime; --tensorboard says it needs TensorFlow, before any
    work."""
    assert importlib.util.find_spec("tensorflow") is None  # (hidden: see the module's docstring)
    shutil.copytree(mini_root / "blizzard", tmp_path / "blizzard")
    whole = run_tool("train_srnn.py", *SMALL, "--nepochs=2", "--audition=1", cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr[-3000:]
    for name in ("mini_srnn_sz16_e0.h5", "mini_srnn_sz16_e1.h5", "mini_srnn_sz16_best.h5", "costs.png",
                 "mini_samples/e1_0.wav"):
        assert (tmp_path / name).is_file(), name
    assert "\nengine: jax on " in whole.stdout
    assert re.search(r"Test loss in bits \d\.\d+ \(best model, epoch \d", whole.stdout), whole.stdout[-2000:]
    e1 = checkpoint.load(str(tmp_path / "mini_srnn_sz16_e1.h5")).train

    resumed = tmp_path / "resumed"
    shutil.copytree(tmp_path / "blizzard", resumed / "blizzard")
    shutil.copy(tmp_path / "mini_srnn_sz16_e0.h5", resumed)
    proc = run_tool("train_srnn.py", *SMALL, "--nepochs=2", "--load=mini_srnn_sz16_e0.h5", cwd=resumed)
    assert proc.returncode == 0, proc.stderr[-3000:]
    again = checkpoint.load(str(resumed / "mini_srnn_sz16_e1.h5")).train
    np.testing.assert_allclose(again["train_bits"], e1["train_bits"], atol=1e-5)
    np.testing.assert_allclose(again["valid_bits"], e1["valid_bits"], atol=1e-5)
    assert e1["train_bits"][1] < e1["train_bits"][0]

    proc = run_tool("train_srnn.py", "--sample=mini_srnn_sz16_e1.h5", "--seconds=0.25", "--nseqs=2",
                    "--prime=blizzard/mini_parts/p5.wav", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for i in range(2):
        x, sr = sf.read(str(tmp_path / f"generated_{i}.wav"))
        assert sr == 16000 and len(x) == 4000 + 4000 and len(np.unique(x[4000:])) > 5  # a part, then 0.25 s

    before = sorted(p.name for p in tmp_path.iterdir())
    assert_clean_error(run_tool("train_srnn.py", *SMALL, "--nepochs=1", "--tensorboard=tb", cwd=tmp_path),
                       "--tensorboard", "TensorFlow is not installed")
    assert sorted(p.name for p in tmp_path.iterdir()) == before
