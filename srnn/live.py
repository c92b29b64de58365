"""Hearing a model as it generates: `--sample F --stream OUT` (a pipe or a WAV that grows) and
`--sample F --serve [PORT]` (a page in the browser, srnn.server). Both take the audio chunk by
chunk from srnn.generation; this module holds what the command line adds: where the bytes go, the
signals that end a run, and what is said on standard error."""
import contextlib
import os
import signal
import sys
import time

from . import generation
from .atomic import cannot_write
from .errors import SrnnError
from .sinks import GrowingWav, PcmPipe, SinkClosed


def say(text):
    """Every message of a live run goes to standard error: standard output may be the audio."""
    print(text, file=sys.stderr, flush=True)


class StopRequests:
    """SIGINT and SIGTERM, while in effect, ask the run to stop after the chunk being generated (its
    samples written: nothing half-made); a second one stops at once (KeyboardInterrupt)."""

    def __init__(self):
        self.signal, self._old = None, {}

    def _handle(self, number, frame):
        if self.signal is not None:
            raise KeyboardInterrupt
        self.signal = signal.Signals(number).name

    def __enter__(self):
        for number in (signal.SIGINT, signal.SIGTERM):
            self._old[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc):
        for number, old in self._old.items():
            signal.signal(number, old)


@contextlib.contextmanager
def standard_output_for_audio():
    """Standard output's file descriptor as a binary file for the audio alone: descriptor 1 itself
    is pointed at standard error meanwhile, so that nothing else (a library's print) lands in the
    audio."""
    sys.stdout.flush()
    audio = os.fdopen(os.dup(1), "wb")
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield audio
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def check_stream_target(target, rate, channels):
    """--stream's target before the model loads: standard output that is not a terminal, or a new
    file in a writable folder."""
    if target == "-":
        if os.isatty(1):
            raise SrnnError(f"--stream - writes raw audio, and standard output is a terminal: pipe it to a player, "
                            f"e.g. `| aplay -r {rate} -f S16_LE -c {channels} -t raw -`, or give a WAV file's name")
        return
    if os.path.lexists(target):
        raise SrnnError(f"--stream {target} exists: a stream writes a new file; choose another name")
    from .atomic import require_writable

    folder = os.path.dirname(target) or "."
    if not os.path.isdir(folder):
        raise SrnnError(f"--stream {target}: the folder {folder} does not exist")
    require_writable(folder, target, "choose another folder")


def stream_command(args, model, req):
    """--stream: the request's audio into standard output or a growing WAV as it is generated,
    until its length, a stop signal, the reader going away or the WAV format's 4 GB."""
    channels, rate, target = req.total, req.rate, args.stream
    check_stream_target(target, rate, channels)
    sampler = model.sampler(args.sample_precision, args.sample_layout)
    where = "standard output" if target == "-" else target
    length = "until stopped (Ctrl-C)" if req.n_samples is None else f"{req.n_samples / rate:g} s"
    form = f"raw 16-bit PCM, {rate} Hz, {channels} channel(s)" if target == "-" else "a WAV that grows"
    say(f"streaming {args.sample} to {where} ({form}): {length}{', after its primer' if req.primer.size else ''}")
    with StopRequests() as stop, (standard_output_for_audio() if target == "-" else contextlib.nullcontext()) as out:
        try:
            sink = PcmPipe(out, channels) if target == "-" else GrowingWav(target, rate, channels)
        except OSError as e:
            raise cannot_write(target, e) from None
        t0 = time.time()
        try:
            ended = _pour(generation.audio_chunks(sampler, req), sink, stop, t0, rate)
        except OSError as e:  # a full disk: the WAV holds every chunk written before
            raise cannot_write(where, e) from None
        finally:
            sink.close()
    took = time.time() - t0
    heard = sink.frames / rate
    say(f"streamed {heard:.2f} s x {channels} in {took:.1f} s ({heard / max(took, 1e-9):.2f}x real time, compilation "
        f"included; weights in {sampler.weight_precision(channels).describe()}){ended}")
    return 0


def _pour(chunks, sink, stop, t0, rate, every=10.0):
    """Write the chunks into the sink until they end or something ends the run; returns what ended
    it, in words (empty: the chunks did)."""
    last = t0
    for chunk in chunks:
        try:
            sink.write(chunk)
        except SinkClosed:
            return ": the reader closed the stream"
        if stop.signal:
            return f": stopped by {stop.signal}"
        if getattr(sink, "full", False):
            return ": the WAV format's 4 GB are full"
        if time.time() - last >= every:  # a long stream says how it goes
            last = time.time()
            say(f"streamed {sink.frames / rate:.1f} s in {last - t0:.1f} s")
    return ""


def serve_command(args, model, req):
    """--serve: the page, until Ctrl-C or SIGTERM. `req`: the command line's request, checked, whose
    temperature, seed, length and label the page starts from."""
    from . import server

    return server.serve(model, req, args, say)
