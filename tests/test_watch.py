"""Watching training: the audition measures, the clips of a broken model as an audition writes them,
TensorBoard events."""
import os

import numpy as np
import pytest

from conftest import ROOT
from srnn.config import ModelConfig
from srnn.quantize import quantize
from srnn.watch import audition_files, describe_clips, inspect_clip

RATE = 16000


def flags(levels, q=256):
    return inspect_clip(levels, "linear", q, RATE).flags()


def test_measures_name_what_is_wrong(rng):
    t = np.arange(2 * RATE) / RATE
    noise = rng.integers(0, 256, 2 * RATE)
    assert flags(noise) == []
    assert flags(np.full(2 * RATE, 128)) == ["near-silent"]
    assert flags(128 + rng.integers(-1, 2, 2 * RATE)) == ["near-silent"]  # a hiss of one level
    assert "clipped" in flags(np.where(rng.uniform(size=2 * RATE) < 0.5, 0, 255))
    assert flags(200 + rng.integers(-20, 20, 2 * RATE)) == ["DC offset"]
    # a short pattern repeated (a model stuck in a loop), and a steady tone, which is one too
    pattern = rng.integers(0, 256, 997)
    assert flags(np.tile(pattern, 40)[:2 * RATE]) == ["stuck in a loop"]
    tone = quantize(np.sin(2 * np.pi * 220 * t) * 0.6 + 0.0)
    assert flags(tone) == ["stuck in a loop"]
    # speech is not flagged: the demo's first 2 s
    from conftest import DEMO
    from srnn.audio import read_mono

    x, _ = read_mono(f"{DEMO}/demo-congrats.flac")
    assert flags(quantize(x[RATE:3 * RATE])) == []


@pytest.mark.parametrize("pattern, flag", [(np.full(100, 128), "near-silent"),
                                           (np.arange(10, 240, 3), "stuck in a loop")])
def test_audition_writes_clips_and_flags_a_broken_model(tmp_path, pattern, flag):
    """What a broken model would generate (a fixed pattern: silence or a loop), as an audition writes it."""
    n = int(1.5 * RATE)
    levels = np.tile(np.tile(pattern, n // len(pattern) + 1)[:n], (2, 1))
    clips = audition_files(levels, ModelConfig(slowdim=8, dim=8), str(tmp_path), "x", 4)
    assert [c[0] for c in clips] == [str(tmp_path / "x_samples" / f"e4_{i}.wav") for i in range(2)]
    for path, audio, report in clips:
        assert (tmp_path / "x_samples" / f"e4_{path[-5]}.png").read_bytes()[:4] == b"\x89PNG"
        assert report.flags() == [flag]
    assert describe_clips(clips) == f"audition e4_0.wav: {flag}; e4_1.wav: {flag}"


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_event_files_keep_tensorflow_off_another_backends_gpu(tmp_path, monkeypatch, backend):
    """On JAX, TensorFlow only writes the event files: it is told to see no GPU before it starts
    (it would reserve most of the GPU's memory that JAX trains on); on TensorFlow it is left be."""
    from srnn import watch
    from srnn.quiet import import_tensorflow

    tf = import_tensorflow()
    hidden = []
    monkeypatch.setattr(watch.engine, "backend", lambda: backend)
    monkeypatch.setattr(tf.config, "set_visible_devices", lambda devices, kind: hidden.append((devices, kind)))
    board = watch.Board(str(tmp_path / "tb"))
    board.scalars(0, loss=1.0)
    board.close()
    assert hidden == ([([], "GPU")] if backend == "jax" else [])
    assert list((tmp_path / "tb").iterdir())  # and the events are written


JAX_THEN_TENSORBOARD = """
import os, sys
os.environ["KERAS_BACKEND"] = "jax"
import jax
import keras  # noqa: F401  (as a JAX run has it: the order that let the notice through)
jax.devices()  # JAX's backends first, as a JAX run has them before its writer starts
from srnn.quiet import stderr_to_file
with stderr_to_file():  # TensorFlow imported by someone else first (Keras' seeding does, quietly)
    import tensorflow
from srnn.watch import Board
board = Board(sys.argv[1])
board.scalars(0, loss=1.0)
board.close()
print("written")
"""


@pytest.mark.slow  # a new interpreter
def test_event_files_on_jax_start_tensorflow_quietly(tmp_path):
    """KERAS_BACKEND=jax --tensorboard: TensorFlow's device probe, the first time it looks for a GPU
    (`E0000 ... failed call to cuInit` on a machine with CUDA's libraries and no GPU), is captured
    like its import, though Keras imported TensorFlow before srnn's writer needed it (it printed
    on old code, in a process that imported JAX and Keras before srnn set TensorFlow's log level)."""
    import subprocess
    import sys

    # as a notebook that imported JAX and Keras before srnn: TensorFlow's C++ log level is not set
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    proc = subprocess.run([sys.executable, "-c", JAX_THEN_TENSORBOARD, str(tmp_path / "tb")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout == "written\n", proc.stderr[-2000:]
    assert proc.stderr == "", proc.stderr
