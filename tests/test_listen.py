"""bench/listen.py's measures on signals whose answers are known, and models/make_demo.sh's decode
step on a stand-in package tree (no network, no ffmpeg: `cp` decodes WAVs named .g722)."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))

import listen  # noqa: E402

SR = 16000
SCRIPT = os.path.join(ROOT, "models", "make_demo.sh")
SOUNDS = "usr/share/asterisk/sounds/en_US_f_Allison"


def harmonic(f0, seconds, amp=0.3, sr=SR):
    t = np.arange(int(seconds * sr)) / sr
    x = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 6))
    return amp * x / np.abs(x).max()


def test_harmonic_tone_is_loud_and_voiced():
    r = listen.measure(harmonic(150, 2.0), SR)
    assert r["windows"] == 50 and r["window_s"] == 0.04
    assert r["quiet_frac"] == 0 and r["voiced_frac"] == 1
    assert r["longest_quiet_s"] == 0


@pytest.mark.parametrize("f0", [75, 390])
def test_pitch_range_ends_are_voiced(f0):
    assert listen.measure(harmonic(f0, 1.0), SR)["voiced_frac"] == 1


def test_white_noise_is_loud_and_unvoiced(rng):
    r = listen.measure(0.3 * rng.standard_normal(2 * SR), SR)
    assert r["quiet_frac"] == 0
    assert r["voiced_frac"] < 0.05


def test_hum_below_the_pitch_range_is_unvoiced():
    t = np.arange(SR) / SR
    r = listen.measure(0.3 * np.sin(2 * np.pi * 50 * t), SR)
    assert r["quiet_frac"] == 0 and r["voiced_frac"] == 0


def test_a_steady_whine_in_noise_is_voiced_but_named(rng):
    """A model stuck in a 1 kHz tone with noise passes the voiced measure (the tone's period
    repeats inside the pitch lags); the whine column names it, and a voice has little of it."""
    t = np.arange(2 * SR) / SR
    r = listen.measure(0.2 * np.sin(2 * np.pi * 1000 * t) + 0.05 * rng.standard_normal(2 * SR), SR)
    assert r["voiced_frac"] > 0.9 and r["whine_frac"] > 0.9
    assert listen.measure(harmonic(150, 1.0), SR)["whine_frac"] == 0
    assert listen.measure(0.3 * rng.standard_normal(SR), SR)["whine_frac"] < 0.05


def test_silence_is_quiet_and_faint_hiss_too(rng):
    r = listen.measure(np.zeros(SR), SR)
    assert r["quiet_frac"] == 1 and r["longest_quiet_s"] == pytest.approx(1.0)
    assert np.isnan(r["voiced_frac"]) and r["loud"] == 0
    hiss = 10 ** (-50 / 20) * rng.standard_normal(SR)  # -50 dBFS: quiet
    assert listen.measure(hiss, SR)["quiet_frac"] == 1
    assert listen.measure(hiss * 10 ** (20 / 20), SR)["quiet_frac"] == 0  # -30 dBFS: loud


@pytest.mark.parametrize("start", [1.0, 1.013])  # on and off the 40 ms grid
def test_longest_quiet_run_is_the_pause(start):
    x = harmonic(150, 3.2)
    x[int(start * SR): int((start + 1.0) * SR)] = 0
    x[int(2.5 * SR): int(2.7 * SR)] = 0  # a shorter pause
    r = listen.measure(x, SR)
    assert 0.96 - 1e-9 <= r["longest_quiet_s"] <= 1.0 + 1e-9
    assert r["quiet"] == (25 + 4 if start == 1.0 else 24 + 4)  # whole windows of the two pauses


def test_dc_offset_is_measured_and_a_constant_is_quiet():
    x = harmonic(150, 1.0) + 0.05
    x[:6400] = 0.04  # 10 windows of the demo model's silences: a constant offset, inaudible
    r = listen.measure(x, SR)
    assert r["dc"] == pytest.approx(np.mean(x))
    assert r["quiet_frac"] == 0.4 and r["quiet_dc"] == pytest.approx(0.04)


def test_integer_and_stereo_samples():
    x = harmonic(150, 1.0)
    ints = np.round(x * 32767).astype(np.int16)
    a, b = listen.measure(x, SR), listen.measure(ints, SR)
    assert a["voiced"] == b["voiced"] and a["quiet"] == b["quiet"]
    assert listen.measure(np.stack([x, x], axis=1), SR)["voiced_frac"] == 1


def test_combine_pools_windows():
    tone, quiet = listen.measure(harmonic(150, 1.0), SR), listen.measure(np.zeros(3 * SR), SR)
    c = listen.combine([tone, quiet])
    assert c["files"] == 2 and c["quiet_frac"] == 0.75 and c["voiced_frac"] == 1
    assert c["longest_quiet_s"] == pytest.approx(3.0) and c["seconds"] == 4.0


def test_command_prints_one_aligned_row_per_input(tmp_path, capsys):
    sf.write(tmp_path / "tone.wav", harmonic(150, 1.0), SR, subtype="PCM_16")
    (tmp_path / "c" / "sub").mkdir(parents=True)
    sf.write(tmp_path / "c" / "a.wav", harmonic(150, 1.0), SR, subtype="PCM_16")
    sf.write(tmp_path / "c" / "sub" / "b.flac", np.zeros(SR), SR)
    (tmp_path / "c" / "notes.txt").write_text("not audio")
    assert listen.main([str(tmp_path / "tone.wav"), "--corpus", str(tmp_path / "c")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and len({len(line) for line in lines}) == 1
    assert lines[1].split()[1:4] == ["1.0", "0%", "100%"]
    assert "(2 files)" in lines[2] and lines[2].split()[-6:-3] == ["50%", "100%", "0%"]
    assert listen.main([str(tmp_path / "missing.wav")]) == 1


# --- models/make_demo.sh's decode step -----------------------------------------------------------

def stand_in_package(work, names):
    """A package tree as `download` leaves it, each .g722 a distinct little WAV (so `cp` decodes)."""
    for i, name in enumerate(names):
        path = work / "pkg" / SOUNDS / name
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, np.full(160, i + 1, dtype=np.int16), SR, format="WAV", subtype="PCM_16")


def tree(folder):
    return sorted(os.path.relpath(os.path.join(r, f), folder) for r, _, fs in os.walk(folder) for f in fs)


def run_script(*steps, env=None):
    return subprocess.run([shutil.which("bash"), SCRIPT, *steps], env=env, capture_output=True,
                          text=True, timeout=60)


def test_decode_step_layout_and_heldout_split(tmp_path):
    names = ([f"prompt-{i:02d}.g722" for i in range(30)] + [f"digits/{i}.g722" for i in range(12)]
             + ["letters/odd name+1.g722", "silence/1.g722", "silence/2.g722"])
    work, blizzard = tmp_path / "work", tmp_path / "blizzard"
    stand_in_package(work, names)
    repo_blizzard = sorted(os.listdir(os.path.join(ROOT, "blizzard")))
    env = {**os.environ, "DEMO_WORK": str(work), "DEMO_CORPUS": str(blizzard / "voice"), "DECODE": "cp"}
    for _ in range(2):  # a rerun gives the same corpus
        proc = run_script("decode", env=env)
        assert proc.returncode == 0, proc.stderr
        # the prompts in bytewise order, silence/ left out, every 20th held out
        prompts = sorted(n for n in names if not n.startswith("silence/"))
        assert len(prompts) == 43
        wav = [n[: -len(".g722")].replace(" ", "_").replace("+", "_") + ".wav" for n in prompts]
        held = [w for i, w in enumerate(wav, 1) if i % 20 == 0]
        assert held == ["prompt-06.wav", "prompt-26.wav"] and "letters/odd_name_1.wav" in wav
        assert tree(blizzard / "voice") == sorted(set(wav) - set(held))
        assert tree(blizzard / "voice_heldout") == held
        assert "41 into" in proc.stdout and "2 held out" in proc.stdout
    for rel, name in zip(wav, prompts):  # each WAV is its own prompt's
        side = "voice_heldout" if rel in held else "voice"
        x, rate = sf.read(blizzard / side / rel, dtype="int16")
        assert rate == SR and x[0] == names.index(name) + 1
    # written nowhere else: only the two corpus folders beside the work folder, the package untouched
    assert sorted(os.listdir(tmp_path)) == ["blizzard", "work"]
    assert sorted(os.listdir(blizzard)) == ["voice", "voice_heldout"]
    assert tree(work) == sorted(os.path.join("pkg", SOUNDS, n) for n in names)
    assert sorted(os.listdir(os.path.join(ROOT, "blizzard"))) == repo_blizzard


def test_decode_step_errors_are_one_line(tmp_path):
    env = {**os.environ, "DEMO_WORK": str(tmp_path / "work"), "DEMO_CORPUS": str(tmp_path / "b" / "voice")}
    proc = run_script("decode", env={**env, "DECODE": "cp"})  # nothing downloaded
    assert proc.returncode != 0 and proc.stderr.count("\n") == 1 and "run " in proc.stderr
    stand_in_package(tmp_path / "work", ["a.g722", "b.g722"])
    proc = run_script("decode", env={**env, "DECODE": "false"})  # a decoder that fails
    assert proc.returncode != 0 and "decoding a.g722 failed" in proc.stderr
    assert tree(tmp_path / "b" / "voice") == []
    # no ffmpeg and no way to install it (no apt-get on PATH): one line, no decoding
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("dirname", "id", "ls"):
        os.symlink(shutil.which(tool), bin_dir / tool)
    proc = run_script("decode", env={**env, "PATH": str(bin_dir)})
    assert proc.returncode != 0 and proc.stderr.strip().endswith("ffmpeg is missing: install it (apt-get install ffmpeg) or set DECODE")
    proc = run_script("download", env={**env, "PATH": str(bin_dir)})
    assert proc.returncode != 0 and "apt-get is missing" in proc.stderr and proc.stderr.count("\n") == 1
    proc = run_script("bogus", env=env)
    assert proc.returncode != 0 and "unknown step 'bogus'" in proc.stderr


def test_the_ready_model_loads_validates_and_samples(tmp_path):
    """models/voice_srnn_sz256.h5 is a valid checkpoint without optimizer state, within
    the size the repository takes, and the README's command samples from it."""
    from conftest import run_tool
    from srnn import checkpoint

    path = os.path.join(ROOT, "models", "voice_srnn_sz256.h5")
    ckpt = checkpoint.load(path)
    assert ckpt.optimizer is None and ckpt.config.dim == 256 and os.path.getsize(path) < 20 << 20
    proc = run_tool("train_srnn.py", "--sample", path, "--seconds", "0.1", "--temperature", "0.95", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    x, rate = sf.read(tmp_path / "generated.wav")
    assert rate == 16000 and len(x) == 1600 and np.abs(x).max() == pytest.approx(0.475, abs=1e-3)
