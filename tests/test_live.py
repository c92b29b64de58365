"""Hearing a model as it generates: Model.stream, --stream (a pipe, a WAV that grows), --serve's
server over plain HTTP; the page itself in a real browser is tests/test_page.py."""
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import soundfile as sf

import srnn
from conftest import ROOT, assert_clean_error, run_tool
from srnn.errors import SrnnError
from srnn.quantize import pcm16

RATE = 16000


def fixed_audio(model_path, seconds, **kwargs):
    return srnn.load(model_path).generate(seconds, scaling="fixed", **kwargs)


# ---- Model.stream

def test_stream_is_generate_with_the_fixed_gain(small_checkpoints):
    """Joined, the chunks are generate(scaling="fixed"): the primer first, then the same levels,
    whatever the chunk (here not a whole number of big frames); an endless stream's first chunks are
    a fixed length's; the arguments are checked before the first chunk."""
    model = srnn.load(small_checkpoints["labelled"])
    primer = np.sin(np.arange(300) / 5.0).astype(np.float32)
    kwargs = dict(n=2, temperature=[0.9, 1.1], seed=7, prime=primer, label=["a", "b:1,a:1"])
    whole = model.generate(0.05, scaling="fixed", **kwargs)
    chunks = list(model.stream(0.05, chunk=333, **kwargs))
    assert [c.shape for c in chunks[:2]] == [(2, 300), (2, 333)] and all(c.dtype == np.float32 for c in chunks)
    np.testing.assert_array_equal(np.concatenate(chunks, axis=1), whole)
    silence = model.generate(0.05, scaling="fixed", label="a", argmax=True, n=1)
    endless = model.stream(label="a", argmax=True, chunk=256)
    head = np.concatenate([next(endless) for _ in range(4)], axis=1)
    endless.close()
    np.testing.assert_array_equal(head[:, :800], silence)
    assert np.abs(whole).max() <= 0.475  # the fixed gain: the extreme levels at +-0.475
    for kwargs, words in ((dict(chunk=0), "chunk=0"), (dict(chunk=1.5), "chunk=1.5"),
                          (dict(temperature=0), "^temperature must"), (dict(seconds=-1.0), "^seconds=-1"),
                          (dict(label="c"), "unknown label 'c'")):
        with pytest.raises(SrnnError, match=words):
            model.stream(**kwargs)


def test_fixed_scaling_is_peak_for_a_clip_that_reaches_an_extreme_level():
    from srnn.quantize import q_zero, to_audio

    levels = np.array([q_zero(256), 0, 255, 140])
    fixed, peak = to_audio(levels, "linear", 256, scaling="fixed"), to_audio(levels, "linear", 256)
    assert fixed[0] == 0 and fixed[1] == pytest.approx(-0.475)  # the bottom level lies a whole range below silence
    np.testing.assert_allclose(fixed / np.abs(fixed).max(), peak / np.abs(peak).max(), rtol=1e-6)
    quiet = np.array([q_zero(256), 120, 136])
    assert np.abs(to_audio(quiet, "linear", 256, scaling="fixed")).max() < 0.04  # not raised to the peak
    assert pcm16(np.array([1.0, -1.0, 0.5, -1e-6, 2.0])).tolist() == [32767, -32768, 16384, -1, 32767]


# ---- the sinks

def test_a_growing_wav_is_a_valid_wav_at_every_moment(tmp_path, monkeypatch):
    """After every chunk the file reads as a WAV of every sample so far; a write that fails half way
    (a full disk) leaves the file at the samples its header counts; an existing file is never
    replaced."""
    import errno

    from srnn import sinks

    path = str(tmp_path / "grow.wav")
    wav = sinks.GrowingWav(path, RATE, 2)
    rng = np.random.default_rng(0)
    written = []
    for k in (100, 1, 4096):
        chunk = rng.uniform(-0.5, 0.5, (2, k)).astype(np.float32)
        wav.write(chunk)
        written.append(chunk)
        data, rate = sf.read(path, dtype="int16")
        assert rate == RATE and data.shape == (sum(c.shape[1] for c in written), 2)
        np.testing.assert_array_equal(data, pcm16(np.concatenate(written, axis=1).T))
    real = os.pwrite
    calls = []

    def full_disk(fd, data, offset):
        calls.append(len(data))
        if len(calls) == 1:
            return real(fd, data[:10], offset)  # part of the samples, then no room
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "pwrite", full_disk)
    with pytest.raises(OSError):
        wav.write(np.zeros((2, 500), np.float32))
    monkeypatch.setattr(os, "pwrite", real)
    wav.close()
    assert sf.info(path).frames == 4197 and os.path.getsize(path) == 44 + 4 * 4197
    with pytest.raises(FileExistsError):
        sinks.GrowingWav(path, RATE, 1)


def test_a_pipe_says_which_end_failed():
    """A reader that went away ends a stream (SinkClosed); a full disk behind the pipe is an error."""
    from srnn import sinks

    read, write = os.pipe()
    os.close(read)
    with open(write, "wb") as out, pytest.raises(sinks.SinkClosed):
        sinks.PcmPipe(out, 1).write(np.zeros((1, 4096), np.float32))
    with open("/dev/full", "wb") as out, pytest.raises(OSError) as e:
        sinks.PcmPipe(out, 1).write(np.zeros((1, 4096), np.float32))
    assert not isinstance(e.value, sinks.SinkClosed)


def test_the_wav_format_end_stops_a_stream(tmp_path, monkeypatch):
    from srnn import memory, sinks

    monkeypatch.setattr(memory, "WAV_LIMIT", 44 + 2 * 1000)
    wav = sinks.GrowingWav(str(tmp_path / "x.wav"), RATE, 1)
    wav.write(np.zeros((1, 600), np.float32))
    assert not wav.full
    wav.write(np.zeros((1, 600), np.float32))
    wav.close()
    assert wav.full and sf.info(str(tmp_path / "x.wav")).frames == 1000


# ---- --stream on the command line

def test_stream_flags_are_checked_in_one_line(small_checkpoints, tmp_path):
    m = small_checkpoints["plain"]
    (tmp_path / "taken.wav").write_bytes(b"mine")
    for argv, words in (
            (["--stream", "-"], "--sample"),
            (["--sample", m, "--endless"], "--endless is for --stream"),
            (["--sample", m, "--stream", "x.wav", "--endless", "--seconds", "3"], "--endless and --seconds"),
            (["--sample", m, "--stream", "x.wav", "--scaling", "peak"], "its scaling is fixed"),
            (["--sample", m, "--stream", "x.wav", "--serve"], "give one"),
            (["--sample", m, "--stream", "taken.wav"], "exists"),
            (["--sample", m, "--stream", "no/such/x.wav"], "does not exist"),
            (["--sample", m, "--stream", "-", "--export", "e"], "give one"),
            (["--sample", m, "--host", "0.0.0.0"], "--host is for --serve"),
            (["--sample", m, "--serve", "70000"], "65535"),
            (["--sample", m, "--serve", "--max-listeners", "0"], "--max-listeners=0"),
            (["--sample", m, "--serve", "--nseqs", "2"], "each listener"),
            (["--sample", m, "--serve", "0", "--host", "no.such.host.invalid"], "--host no.such.host.invalid")):
        proc = run_tool("train_srnn.py", *argv, cwd=tmp_path)
        assert_clean_error(proc, words)
    assert (tmp_path / "taken.wav").read_bytes() == b"mine" and not (tmp_path / "x.wav").exists()
    proc = run_tool("train_srnn.py", "--sample", m, "--serve", "0.0.0.0:8000", cwd=tmp_path)  # argparse's words
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "give --host ADDRESS" in proc.stderr


def test_stream_to_a_wav_equals_the_file_with_the_fixed_scaling(small_checkpoints, tmp_path):
    """--stream FILE of a fixed length holds what --sample --scaling fixed writes, sample for sample;
    a disk that fills up mid-stream is one line, and the WAV holds every chunk written before."""
    import resource

    m = small_checkpoints["plain"]
    assert run_tool("train_srnn.py", "--sample", m, "--seconds", "0.5", "--scaling", "fixed",
                    cwd=tmp_path).returncode == 0
    proc = run_tool("train_srnn.py", "--sample", m, "--seconds", "0.5", "--stream", "live.wav", cwd=tmp_path)
    assert proc.returncode == 0 and "streamed 0.50 s" in proc.stderr and proc.stdout == "", proc.stderr
    assert sf.read(str(tmp_path / "live.wav"), dtype="int16")[0].tolist() == \
        sf.read(str(tmp_path / "generated.wav"), dtype="int16")[0].tolist()

    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (44 + 2 * 10000, hard))
    try:
        proc = run_tool("train_srnn.py", "--sample", m, "--stream", "full.wav", "--endless", cwd=tmp_path)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old)
    assert_clean_error(proc, "cannot write full.wav", "the disk may be full")
    frames = sf.info(str(tmp_path / "full.wav")).frames
    assert frames > 0 and frames % 4096 == 0 and os.path.getsize(tmp_path / "full.wav") == 44 + 2 * frames


def _streamer(model, *flags, cwd):
    return subprocess.Popen([sys.executable, os.path.join(ROOT, "train_srnn.py"), "--sample", model, *flags],
                            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


@pytest.mark.slow  # two new interpreters
def test_stream_to_a_pipe_and_a_growing_wav_end_cleanly(small_checkpoints, tmp_path, xla_generation):
    """--stream - writes raw 16-bit PCM as it is generated (the audio of Model.stream) and nothing
    else; a reader that goes away ends the run with exit 0. --stream FILE --endless grows a WAV
    that reads as a WAV mid-run; SIGINT ends it with exit 0, the WAV holding every sample made."""
    m = small_checkpoints["plain"]
    pipe = _streamer(m, "--stream", "-", "--endless", "--seed", "5", cwd=tmp_path)
    head = pipe.stdout.read(2 * RATE)
    expected = pcm16(fixed_audio(m, 1.0, seed=5)[0])
    assert np.array_equal(np.frombuffer(head, "<i2"), expected)
    pipe.stdout.close()  # as aplay does when it is closed
    _, err = pipe.communicate(timeout=120)
    assert pipe.returncode == 0 and "the reader closed the stream" in err.decode() and "Traceback" not in err.decode()

    grow = _streamer(m, "--stream", "grow.wav", "--endless", cwd=tmp_path)
    path = tmp_path / "grow.wav"
    deadline = time.time() + 120
    while time.time() < deadline and not (path.exists() and os.path.getsize(path) > 44 + 4 * RATE):
        time.sleep(0.2)
    mid = sf.read(str(path), dtype="int16")[0]  # a reader opening the file mid-run
    assert len(mid) >= 2 * RATE
    grow.send_signal(signal.SIGINT)
    _, err = grow.communicate(timeout=60)
    err = err.decode()
    assert grow.returncode == 0 and "stopped by SIGINT" in err and "Traceback" not in err, err
    whole = sf.read(str(path), dtype="int16")[0]
    assert len(whole) > len(mid) and np.array_equal(whole[:len(mid)], mid)
    said = float(err.split("streamed ")[-1].split(" s")[0])  # (two decimals)
    assert abs(len(whole) / RATE - said) <= 0.005


# ---- --serve over plain HTTP

@pytest.fixture
def station(small_checkpoints):
    """A server on a free port of 127.0.0.1 for the labelled model, one listener at a time, in a
    thread of this process: (its port, the Station)."""
    from srnn import server

    model = srnn.load(small_checkpoints["labelled"])
    req = model.request(2.0, 1, 1.0, None, None, "a")
    st = server.Station(model, req, model.sampler(), max_listeners=1, speed=9.0, log=lambda line: None)
    httpd = server.listen(st, server.LOCAL, 0)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd.server_address[1], st
    httpd.shutdown()
    httpd.server_close()


def get(port, path, headers=None, method="GET"):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request(method, path, headers={"Host": f"127.0.0.1:{port}", **(headers or {})})
    return conn, conn.getresponse()


def refusal(port, path, status, headers=None):
    conn, r = get(port, path, headers)
    body = r.read()
    conn.close()
    assert r.status == status, (r.status, body)
    return json.loads(body)["error"]


def test_the_server_serves_its_page_and_streams(station):
    port, _ = station
    conn, r = get(port, "/")
    page = r.read().decode()
    assert r.status == 200 and "page.js" in page and "http" not in page  # nothing from outside
    assert "default-src 'self'" in r.getheader("Content-Security-Policy")
    info = json.loads(get(port, "/info")[1].read())
    assert info["labels"] == ["a", "b"] and info["sample_rate"] == RATE and info["defaults"]["label"] == "a"
    conn, r = get(port, "/stream?temperature=0.9&seed=3&seconds=0.5&label=b")
    assert r.status == 200 and r.getheader("X-Sample-Rate") == str(RATE)
    ident = r.getheader("X-Stream-Id")
    stats = json.loads(get(port, f"/stats?id={ident}")[1].read())
    assert set(stats) == {"generated", "computing", "sent"}
    body = r.read()
    expected = fixed_audio(station[1].model.path, 0.5, temperature=0.9, seed=3, label="b")[0]
    assert np.array_equal(np.frombuffer(body, "<i2"), pcm16(expected))


BAD_QUERIES = [  # (query, the flags train_srnn.py is given for the same mistake)
    ("temperature=-1", ["--temperature", "-1"]),
    ("temperature=nan", ["--temperature", "nan"]),
    ("temperature=warm", ["--temperature", "warm"]),
    ("seed=-5", ["--seed=-5"]),
    ("seed=1.5", ["--seed=1.5"]),
    ("seconds=0", ["--seconds=0"]),
    ("seconds=1e-9", ["--seconds=1e-9"]),
    ("label=c", ["--label", "c"]),
    ("label=a:0", ["--label", "a:0"]),
]


@pytest.mark.parametrize("query,argv", BAD_QUERIES, ids=[q for q, _ in BAD_QUERIES])
def test_bad_stream_parameters_are_400_with_the_flags_message(station, small_checkpoints, tmp_path, query, argv):
    port, _ = station
    proc = run_tool("train_srnn.py", "--sample", small_checkpoints["labelled"], "--seconds", "0.1", *argv,
                    cwd=tmp_path)
    if "train_srnn.py: error: " in proc.stderr:  # argparse's own words
        cli = proc.stderr.split("train_srnn.py: error: ")[1].strip()
    else:
        cli = assert_clean_error(proc)[len("error: "):]
    assert refusal(port, f"/stream?{query}", 400) == cli


def test_the_server_refuses_what_it_must(station):
    port, st = station
    assert "unknown parameter 'volume'" in refusal(port, "/stream?volume=11", 400)
    assert "given 2 times" in refusal(port, "/stream?seed=1&seed=2", 400)
    for path in ("/../../etc/passwd", "/page.js/../../srnn/api.py", "/%2e%2e/api.py", "/api.py", "/page"):
        assert "no such page" in refusal(port, path, 404)
    for host in ("evil.example:80", "127.0.0.1.nip.io", "", "[::1"):
        assert "does not name this machine" in refusal(port, "/info", 403, {"Host": host})
    assert "own page" in refusal(port, "/stream", 403, {"Sec-Fetch-Site": "cross-site"})
    # one listener at a time here: a second is refused at once, and the first is not slowed
    conn, first = get(port, "/stream?seconds=endless")
    assert first.status == 200 and len(first.read(4096)) == 4096
    t0 = time.perf_counter()
    assert "all 1 listener place(s) are taken" in refusal(port, "/stream", 503)
    assert time.perf_counter() - t0 < 5
    assert len(first.read(4096)) == 4096
    first.close()
    conn.close()
    deadline = time.time() + 30
    while st.listening and time.time() < deadline:  # the server sees the listener leave at its next write
        time.sleep(0.05)
    conn, again = get(port, "/stream?seconds=0.1")
    assert again.status == 200 and len(again.read()) == 2 * 1600


def test_a_port_in_use_is_one_line(small_checkpoints, tmp_path):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    try:
        proc = run_tool("train_srnn.py", "--sample", small_checkpoints["plain"], "--serve", port, cwd=tmp_path)
    finally:
        busy.close()
    assert_clean_error(proc, f"--serve {port}", "in use")


def test_the_server_binds_only_this_machine_unless_told(small_checkpoints):
    from srnn import server

    model = srnn.load(small_checkpoints["plain"])
    st = server.Station(model, model.request(1.0), None, 1, 1.0, print)
    httpd = server.listen(st, server.LOCAL, 0)
    assert httpd.server_address[0] == "127.0.0.1" and httpd.local_only
    httpd.server_close()
    assert server.host_allowed("localhost:8000", True) and server.host_allowed("[::1]:8000", True)
    assert not server.host_allowed("192.168.1.9:8000", True) and server.host_allowed("192.168.1.9:8000", False)
    assert not server.host_allowed("attacker.example", False)
