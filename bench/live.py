"""Live generation: how soon the first sound comes and whether a long stream keeps up.

    python bench/live.py                       # the ready model and the dim-1024 95 % sparse model, 10 minutes each
    python bench/live.py --minutes 1           # shorter streams
    python bench/live.py --models ready        # one model (ready, sparse1024, or a checkpoint's path)

For each model:
- one stream's speed: samples/s of the compiled loop in chunks (Model.stream's), compilation excluded;
- first sound, cold: `train_srnn.py --sample F --stream - --endless` started, until its first audio
  bytes reach the pipe (the interpreter, the framework, the checkpoint and the compilation included);
- first sound, warm (pipe): a new stream of an already compiled model, until its first chunk;
- first sound, warm (page): the page's request to a running --serve (compiled when it started) until
  the first audio bytes arrive over HTTP, plus the page's 80 ms scheduling margin (page.js START_DELAY);
- a long stream through the server as the page gets it (paced 2 s ahead of real time): a listener
  that plays from the first bytes on counts an underrun whenever what has arrived runs out; the
  process's RSS after the first minute and at the end.
Figures are this machine's (printed first); the dim-1024 model's weights are random (its speed is its
sparsity's, whatever it learnt).
"""
import argparse
import http.client
import os
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from common import REAL_TIME, describe_machine, sparse_model  # noqa: E402

import psutil  # noqa: E402

ROOT = os.path.dirname(HERE)
READY = os.path.join(ROOT, "models", "voice_srnn_sz256.h5")
PAGE_START_DELAY = 0.08  # s: page.js schedules the first piece this far ahead


def model_file(name, folder):
    """A checkpoint for `name`: the ready model, a random dim-1024 model 95 % sparse, or a path."""
    if name == "ready":
        return READY
    if name == "sparse1024":
        from srnn import checkpoint

        path = os.path.join(folder, "sparse1024_srnn_sz1024.h5")
        checkpoint.save(path, sparse_model("original", 1024, 0.05))
        return path
    return name


def speed(model, chunks=40):
    """One stream's samples/s in chunks, after a first chunk (the compilation)."""
    stream = model.stream()
    next(stream)
    t0 = time.perf_counter()
    for _ in range(chunks):
        n = next(stream).shape[1]
    took = time.perf_counter() - t0
    stream.close()
    return chunks * n / took


def cold_first_sound(path):
    """Seconds from starting the command until its first audio bytes come through the pipe."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "train_srnn.py"), "--sample", path, "--stream", "-",
                             "--endless"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    proc.stdout.read(2)
    took = time.perf_counter() - t0
    proc.stdout.close()
    proc.wait(timeout=60)
    return took


def warm_first_sound(model):
    """Seconds from asking a compiled model for a new stream until its first chunk."""
    t0 = time.perf_counter()
    stream = model.stream(seed=7)
    next(stream)
    took = time.perf_counter() - t0
    stream.close()
    return took


def serve(model):
    """A --serve server for the model in a thread of this process, compiled: (port, station, server)."""
    from srnn import server

    req = model.request(None)
    sampler = model.sampler()
    station = server.Station(model, req, sampler, max_listeners=4, speed=server.measure(sampler, req), log=lambda x: 0)
    httpd = server.listen(station, server.LOCAL, 0)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd.server_address[1], station, httpd


def listen(port, seconds, rate, rss):
    """A listener of `seconds` of an endless stream: (first sound in s, underruns, RSS after one
    minute and at the end in MB). It plays from its first bytes (plus the page's margin) at real
    time, and counts an underrun whenever its buffer runs dry, starting again from the next bytes."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    t0 = time.perf_counter()
    conn.request("GET", "/stream?seconds=endless", headers={"Host": f"127.0.0.1:{port}"})
    response = conn.getresponse()
    data = response.read(8192)
    start = time.perf_counter()
    first = start - t0 + PAGE_START_DELAY
    clock = start + PAGE_START_DELAY  # when the first sample plays
    buffered, underruns, rss_minute = len(data) / 2 / rate, 0, None
    while time.perf_counter() - start < seconds:
        data = response.read(8192)
        now = time.perf_counter()
        if now - clock > buffered:  # the listener has played all it had: a gap
            underruns += 1
            clock, buffered = now + PAGE_START_DELAY, 0.0
        buffered += len(data) / 2 / rate
        if rss_minute is None and now - start >= min(60, seconds / 2):
            rss_minute = rss()
    conn.close()
    return first, underruns, rss_minute, rss()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=10.0, help="length of the long stream (default 10)")
    p.add_argument("--models", default="ready,sparse1024", help="comma-separated: ready, sparse1024 or a path")
    args = p.parse_args()
    describe_machine()
    import srnn

    process = psutil.Process()
    rss = lambda: process.memory_info().rss / 2**20  # noqa: E731
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name in args.models.split(","):
            path = model_file(name, folder)
            model = srnn.load(path)
            rate = model.sample_rate
            one = speed(model)
            print(f"{name}: one stream {one:,.0f} samples/s ({one / REAL_TIME:.2f}x real time)", flush=True)
            cold = cold_first_sound(path)
            warm = warm_first_sound(model)
            port, station, httpd = serve(model)
            page, underruns, rss_minute, rss_end = listen(port, 60 * args.minutes, rate, rss)
            httpd.shutdown()
            httpd.server_close()
            rows.append((name, model.sampler().weight_precision(1).describe(), one, cold, warm, page, underruns,
                         rss_minute, rss_end))
            print(f"{name}: first sound cold {cold:.2f} s, warm {warm:.3f} s (pipe) / {page:.3f} s (page); "
                  f"{args.minutes:g} min: {underruns} underruns, RSS {rss_minute:.0f} MB after the first minute, "
                  f"{rss_end:.0f} MB at the end", flush=True)
    print(f"\n| model | weights | one stream | first sound, cold (pipe) | warm (pipe) | warm (page) | "
          f"underruns in {args.minutes:g} min | RSS after 1 min -> end |")
    print("|---|---|---|---|---|---|---|---|")
    for name, weights, one, cold, warm, page, underruns, rss_minute, rss_end in rows:
        print(f"| {name} | {weights} | {one:,.0f} samples/s ({one / REAL_TIME:.1f}x) | {cold:.1f} s | "
              f"{warm * 1000:.0f} ms | {page * 1000:.0f} ms | {underruns} | {rss_minute:.0f} -> {rss_end:.0f} MB "
              f"({rss_end - rss_minute:+.0f}) |")


if __name__ == "__main__":
    main()
