"""preprocess.py as a user runs it, on folders built here with soundfile."""
import os

import numpy as np
import pytest
import soundfile as sf

from conftest import assert_clean_error, run_tool, tone, write_audio


@pytest.fixture
def corpus(tmp_path):
    """44.1 kHz stereo WAV (10 s, 1 kHz tone), 8 kHz mono FLAC (7 s), a nested OGG (5 s),
    one corrupt .wav and one text file."""
    src = tmp_path / "speech"
    write_audio(str(src / "a_stereo.wav"), tone(1000, 10, 44100, channels=2), 44100)
    write_audio(str(src / "b_mono.flac"), tone(440, 7, 8000), 8000)
    write_audio(str(src / "nested" / "c.ogg"), tone(300, 5, 16000), 16000, format="OGG", subtype="VORBIS")
    (src / "broken.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk")
    (src / "notes.txt").write_text("not audio")
    return src


def test_parts_from_mixed_formats(corpus):
    proc = run_tool("preprocess.py", corpus)
    assert proc.returncode == 0, proc.stderr
    out = corpus.parent / "speech_parts"
    # every input's duration, from its own header, at 16 kHz: 10 + 7 + 5 = 22 s -> 2 parts of 8 s
    total = sum(sf.info(str(corpus / f)).duration for f in ("a_stereo.wav", "b_mono.flac", "nested/c.ogg"))
    n_parts = int(total // 8)
    assert n_parts == 2
    assert sorted(os.listdir(out)) == ["p0.wav", "p1.wav", "prompts.txt"]
    for i in range(n_parts):
        info = sf.info(str(out / f"p{i}.wav"))
        assert (info.samplerate, info.channels, info.frames, info.subtype) == (16000, 1, 128000, "PCM_16")
    assert (out / "prompts.txt").read_text() == "p0.wav\tnone\np1.wav\tnone\n"
    # the corrupt file is named in a warning; the summary tells what was read and dropped
    assert "broken.wav" in proc.stderr and "warning" in proc.stderr
    assert "wrote 2 part(s)" in proc.stdout and "dropped the last 6.00 s" in proc.stdout
    assert "ignored 1 non-audio" in proc.stdout


def test_tone_keeps_its_frequency_after_resampling(corpus):
    assert run_tool("preprocess.py", corpus).returncode == 0
    x, sr = sf.read(str(corpus.parent / "speech_parts" / "p0.wav"))
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    peak_hz = np.argmax(spectrum) * sr / len(x)
    assert abs(peak_hz - 1000) < 1.0
    assert np.abs(x).max() == pytest.approx(0.5, abs=0.01)  # stereo mix-down keeps the amplitude


def test_prompts_in_numeric_order(tmp_path):
    src = tmp_path / "long"
    write_audio(str(src / "x.wav"), tone(200, 8 * 12 + 1, 16000), 16000)
    assert run_tool("preprocess.py", src, "--seconds", 8).returncode == 0
    lines = (tmp_path / "long_parts" / "prompts.txt").read_text().splitlines()
    assert [line.split("\t")[0] for line in lines] == [f"p{i}.wav" for i in range(12)]


def test_second_run_refuses_and_force_replaces_only_ours(corpus):
    assert run_tool("preprocess.py", corpus).returncode == 0
    out = corpus.parent / "speech_parts"
    (out / "mine.txt").write_text("keep me")
    (out / "p7.wav").write_bytes(b"stale part from an older run")
    before = (out / "p0.wav").read_bytes()

    again = run_tool("preprocess.py", corpus)
    assert_clean_error(again, "already holds parts", "--force")
    assert (out / "p0.wav").read_bytes() == before and (out / "p7.wav").exists()

    forced = run_tool("preprocess.py", corpus, "--force")
    assert forced.returncode == 0, forced.stderr
    assert sorted(os.listdir(out)) == ["mine.txt", "p0.wav", "p1.wav", "prompts.txt"]
    assert (out / "mine.txt").read_text() == "keep me"


def test_options_out_seconds_samplerate(corpus, tmp_path):
    out = tmp_path / "elsewhere"
    proc = run_tool("preprocess.py", corpus, "--out", out, "--seconds", 2, "--samplerate", 8000)
    assert proc.returncode == 0, proc.stderr
    assert len([f for f in os.listdir(out) if f.endswith(".wav")]) == 11  # 22 s / 2 s
    info = sf.info(str(out / "p0.wav"))
    assert (info.samplerate, info.frames) == (8000, 16000)


def test_empty_file_among_good_ones_is_skipped(tmp_path):
    src = tmp_path / "d"
    write_audio(str(src / "a.wav"), tone(100, 9, 16000), 16000)
    write_audio(str(src / "empty.wav"), np.zeros(0), 16000)
    proc = run_tool("preprocess.py", src)
    assert proc.returncode == 0, proc.stderr
    assert "empty.wav" in proc.stderr


def test_error_dir_missing(tmp_path):
    assert_clean_error(run_tool("preprocess.py", tmp_path / "nope"), "nope", "does not exist")


def test_error_not_a_folder(tmp_path):
    f = tmp_path / "file.wav"
    f.write_bytes(b"x")
    assert_clean_error(run_tool("preprocess.py", f), "file.wav", "not a folder")


def test_error_no_audio(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "readme.txt").write_text("hi")
    assert_clean_error(run_tool("preprocess.py", tmp_path / "d"), "no audio files")
    assert not (tmp_path / "d_parts").exists()


def test_error_every_file_unreadable(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "a.wav").write_bytes(b"garbage")
    (d / "b.flac").write_bytes(b"")
    assert_clean_error(run_tool("preprocess.py", d), "none of the 2 audio files")
    assert not (tmp_path / "d_parts").exists()


def test_error_shorter_than_one_part(tmp_path):
    write_audio(str(tmp_path / "d" / "a.wav"), tone(100, 3, 16000), 16000)
    err = assert_clean_error(run_tool("preprocess.py", tmp_path / "d"), "3.0 s", "--seconds")
    assert "8" in err
    assert not (tmp_path / "d_parts").exists()


def test_files_are_read_in_blocks_and_resampled_as_one_piece(tmp_path, monkeypatch):
    """Memory does not grow with a file's length: each file is read BLOCK frames at a time and
    resampled as it streams, and the parts hold what resampling the whole file at once gives."""
    import srnn.audio
    from srnn.audio import StreamResampler, read_mono, resample
    from srnn.parts import make_parts

    rng = np.random.default_rng(5)
    x = np.stack([tone(700, 3.3, 44100) + 0.1 * rng.standard_normal(int(3.3 * 44100))] * 2, axis=1) * 0.8
    path = write_audio(str(tmp_path / "in" / "long.wav"), x, 44100, subtype="FLOAT")
    sizes = []
    real = srnn.audio.read_blocks

    def spy(p, block=None):
        for b in real(p, block):
            sizes.append(len(b))
            yield b

    monkeypatch.setattr(srnn.audio, "BLOCK", 1000)
    monkeypatch.setattr(srnn.audio, "read_blocks", spy)
    summary = make_parts(str(tmp_path / "in"), seconds=1, log=lambda m: None)
    assert summary.parts == 3 and sizes and max(sizes) == 1000  # two passes, in blocks
    whole = resample(*read_mono(path), 16000)
    for i in range(3):
        part, _ = sf.read(str(tmp_path / "in_parts" / f"p{i}.wav"))
        np.testing.assert_allclose(part, whole[i * 16000:(i + 1) * 16000], atol=1 / 32767)
    # the resampler itself: block by block == resample_poly of the whole signal, to the bit
    for sr_in, sr_out in ((44100, 16000), (8000, 16000), (16000, 22050)):
        y = rng.standard_normal(20011).astype(np.float32)
        r = StreamResampler(sr_in, sr_out)
        cuts = np.cumsum(rng.integers(1, 3000, 20))
        got = np.concatenate([r.feed(b) for b in np.split(y, cuts[cuts < len(y)])] + [r.finish()])
        np.testing.assert_array_equal(got, resample(y, sr_in, sr_out))
