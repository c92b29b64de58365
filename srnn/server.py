"""`--sample F --serve [PORT]`: a local web page to hear a model as it generates.

The page (srnn/page/: HTML, JavaScript and CSS, nothing fetched from elsewhere) asks for a stream
with its controls' values; the server checks them as the command line checks its flags (the same
messages, as HTTP 400), takes a listener's place (HTTP 503 when all are taken) and sends raw 16-bit
PCM as srnn.generation makes it, at most LEAD seconds ahead of real time, so that each listener costs
about real time and several can listen at once. The page plays the chunks as they come (Web Audio),
draws a spectrogram and shows the time to first sound, the buffer, the underruns and the speed.

Routes: `/` (the page), `/page.js`, `/page.css`, `/info` (the model and the server, JSON),
`/stream?temperature=T&seed=S&seconds=N|endless&label=L` (the audio), `/stats?id=ID` (a stream's
speed). Nothing a client sends reaches the filesystem: the page's three files are a fixed table.
The server binds 127.0.0.1 unless --host says otherwise, and answers only requests whose Host header
names this machine (DNS rebinding: a page of another site cannot reach it under its own name), and
streams only to its own page or to programs (a request another site's page makes is refused).
"""
import dataclasses
import http.server
import ipaddress
import json
import os
import secrets
import socket
import threading
import time
import urllib.parse

from .checks import OptionError
from .errors import SrnnError, first_line
from .flags import as_flags

LOCAL = "127.0.0.1"
LEAD = 2.0  # seconds: how far a stream's audio may run ahead of real time (the page's buffer)
HEADROOM = 1.5  # a listener's stream needs this many times real time (the default limit of listeners)
PARAMS = ("temperature", "seed", "seconds", "label")
PAGE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "page")
PAGE = {  # path -> (file in PAGE_DIR, content type): the only files served
    "/": ("index.html", "text/html; charset=utf-8"),
    "/page.js": ("page.js", "text/javascript; charset=utf-8"),
    "/page.css": ("page.css", "text/css; charset=utf-8"),
}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; style-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def listener_limit(speed):
    """The listeners a server admits by default: as many as one stream's measured speed (x real
    time) serves with HEADROOM each, at least one."""
    return max(1, int(speed / HEADROOM))


class Refused(Exception):
    """A request answered with an HTTP error and a one-line message (the page shows it)."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def _is_loopback(name):
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return name == "localhost"


def host_allowed(header, local_only):
    """Whether a request's Host header names this machine: localhost or a loopback address, and
    when listening beyond this machine also an IP address or this machine's name (a name that
    another site's DNS points here is what DNS rebinding would send)."""
    if not header:
        return False
    try:
        name = urllib.parse.urlsplit("//" + header).hostname
        urllib.parse.urlsplit("//" + header).port  # noqa: B018  (a malformed port raises)
    except ValueError:
        return False
    if name is None:
        return False
    if _is_loopback(name):
        return True
    if local_only:
        return False
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return name in {socket.gethostname().lower(), socket.getfqdn().lower()}


class Station:
    """What the server plays: the model, its sampler, the command line's request (the page's
    defaults), the listeners' places and their streams' figures."""

    def __init__(self, model, req, sampler, max_listeners, speed, log):
        self.model, self.req, self.sampler, self.log = model, req, sampler, log
        self.max_listeners, self.speed = max_listeners, speed  # speed: x real time, one stream
        self.lock, self.listening, self.stats = threading.Lock(), 0, {}

    @property
    def default_label(self):
        """A conditioned model's label for a stream that names none: the command line's --label (or
        mixture), else the first label."""
        if not self.model.labels:
            return None
        if self.req.total > 1:  # no --label: the command line's request has every label
            return self.model.labels[0]
        from .labels import describe_mix

        return describe_mix(self.req.mix[0], self.model.labels)

    def info(self):
        req = self.req
        return {"model": os.path.basename(self.model.path), "sample_rate": req.rate, "labels": list(self.model.labels),
                "defaults": {"temperature": req.temps[0], "seed": req.seed, "label": self.default_label,
                             "seconds": None if req.n_samples is None else req.n_samples / req.rate},
                "max_listeners": self.max_listeners, "listening": self.listening, "speed": round(self.speed, 2),
                "lead": LEAD}

    def request(self, query):
        """The Request a stream's query asks for, checked as the command line checks its flags."""
        try:
            fields = urllib.parse.parse_qs(query, keep_blank_values=True, strict_parsing=True,
                                           max_num_fields=len(PARAMS)) if query else {}
        except ValueError:
            raise Refused(400, f"the query is not name=value pairs of {', '.join(PARAMS)}") from None
        for name, values in fields.items():
            if name not in PARAMS:
                raise Refused(400, f"unknown parameter {name!r}: the stream takes {', '.join(PARAMS)}")
            if len(values) > 1:
                raise Refused(400, f"{name} is given {len(values)} times: give it once")
        value = {name: values[0] for name, values in fields.items()}
        req = self.req
        temperature = _number(value, "temperature", float, req.temps[0])
        seed = _number(value, "seed", int, req.seed)
        if value.get("seconds") == "endless":
            seconds = None
        else:
            seconds = _number(value, "seconds", float, None if req.n_samples is None else req.n_samples / req.rate)
        try:
            new = self.model.request(seconds, 1, temperature, seed, None, value.get("label", self.default_label),
                                     req.argmax, req.rate)
        except OptionError as e:  # the command line's words for the same mistake
            raise Refused(400, as_flags(e, sample=True)) from None
        except SrnnError as e:
            raise Refused(400, str(e)) from None
        return dataclasses.replace(new, primer=req.primer)  # the command line's primer, read once

    def take_place(self):
        with self.lock:
            if self.listening >= self.max_listeners:
                raise Refused(503, f"all {self.max_listeners} listener place(s) are taken (this machine generates "
                                   f"{self.speed:.1f}x real time): try again when one stops, or start the server with "
                                   f"a higher --max-listeners")
            self.listening += 1

    def leave_place(self):
        with self.lock:
            self.listening -= 1


def _number(value, name, kind, default):
    """A query value as the command line's argparse reads its flag (the same words when it is not
    a number)."""
    if name not in value:
        return default
    try:
        return kind(value[name])
    except ValueError:
        raise Refused(400, f"argument --{name}: invalid {kind.__name__} value: {value[name]!r}") from None


class Handler(http.server.BaseHTTPRequestHandler):
    server_version = "srnn"
    sys_version = ""

    @property
    def station(self):
        return self.server.station

    def log_message(self, format, *args):  # noqa: A002  (the base class's name) - each stream is said instead
        pass

    def do_GET(self):  # noqa: N802  (http.server's name)
        try:
            self._route()
        except Refused as e:
            self._send_json(e.status, {"error": str(e)})
        except (BrokenPipeError, ConnectionResetError):
            pass  # the listener went away

    def do_HEAD(self):  # noqa: N802
        self.do_GET()

    def _route(self):
        if not host_allowed(self.headers.get("Host"), self.server.local_only):
            raise Refused(403, f"the Host header {self.headers.get('Host')!r} does not name this machine: open the "
                               f"page at http://{LOCAL}:{self.server.server_address[1]}/")
        url = urllib.parse.urlsplit(self.path)
        if url.path in PAGE:
            return self._send_file(*PAGE[url.path])
        if url.path == "/info":
            return self._send_json(200, self.station.info())
        if url.path == "/stats":
            return self._send_json(200, self._stats(url.query))
        if url.path == "/stream":
            return self._stream(url.query)
        raise Refused(404, f"no such page: {url.path[:80]!r}")

    def _send_headers(self, status, content_type, length=None, extra=()):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if length is not None:
            self.send_header("Content-Length", str(length))
        for name, value in (*SECURITY_HEADERS.items(), *extra):
            self.send_header(name, value)
        self.end_headers()

    def _send_json(self, status, value):
        body = json.dumps(value).encode("utf-8")
        self._send_headers(status, "application/json", len(body))
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_file(self, name, content_type):
        with open(os.path.join(PAGE_DIR, name), "rb") as f:
            body = f.read()
        self._send_headers(200, content_type, len(body))
        if self.command != "HEAD":
            self.wfile.write(body)

    def _stats(self, query):
        ident = urllib.parse.parse_qs(query).get("id", [""])[0]
        stats = self.station.stats.get(ident)
        if stats is None:
            raise Refused(404, "no such stream")
        return dict(stats)

    def _stream(self, query):
        # another site's page may make a browser ask for the stream (an <audio> tag): only this
        # page's requests, and programs' (which send no Sec-Fetch-Site), are served
        if self.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
            raise Refused(403, "the stream plays on this server's own page")
        station = self.station
        req = station.request(query)
        station.take_place()
        ident = secrets.token_hex(8)
        stats = station.stats[ident] = {"generated": 0.0, "computing": 0.0, "sent": 0.0}
        try:
            self._send_headers(200, "application/octet-stream", extra=(
                ("X-Sample-Rate", str(req.rate)), ("X-Stream-Id", ident), ("Connection", "close")))
            if self.command != "HEAD":
                self._pour(req, stats)
        finally:
            station.leave_place()
            station.stats.pop(ident, None)

    def _pour(self, req, stats):
        from .generation import STREAM_CHUNK, audio_chunks
        from .sinks import interleaved

        station, rate = self.station, req.rate
        length = "endless" if req.n_samples is None else f"{req.n_samples / rate:g} s"
        station.log(f"a listener ({self.client_address[0]}): T={req.temps[0]:g}, seed {req.seed}, {length}")
        chunks = audio_chunks(station.sampler, req, STREAM_CHUNK)
        t0 = time.monotonic()
        try:
            while True:
                tick = time.monotonic()
                chunk = next(chunks, None)
                if chunk is None:
                    break
                stats["computing"] += time.monotonic() - tick
                self.wfile.write(interleaved(chunk))
                self.wfile.flush()
                stats["generated"] = stats["sent"] = stats["sent"] + chunk.shape[1] / rate
                ahead = stats["sent"] - (time.monotonic() - t0)
                if ahead > LEAD:  # no further ahead of the listener than its buffer needs
                    time.sleep(ahead - LEAD)
        finally:
            chunks.close()
        station.log(f"a listener's stream ended after {stats['sent']:.1f} s")


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True  # a stream's thread never holds the process when the server stops

    def __init__(self, address, station, local_only, family):
        self.address_family = family
        self.station, self.local_only = station, local_only
        super().__init__(address, Handler)

    def handle_error(self, request, client_address):
        import sys

        self.station.log(f"warning: a request from {client_address[0]} failed ({first_line(sys.exc_info()[1])})")


def listen(station, host, port):
    """The server, bound to (host, port); a busy, forbidden or unknown address is one line."""
    flag = f"--serve {port}" if host == LOCAL else f"--host {host} --serve {port}"
    try:
        family, *_, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except (socket.gaierror, UnicodeError) as e:
        raise SrnnError(f"--host {host}: not an address this machine can listen on ({first_line(e)})") from None
    try:
        return Server(address[:2], station, local_only=_is_loopback(address[0]), family=family)
    except OSError as e:
        import errno

        reason = {errno.EADDRINUSE: "the port is in use (another server?): choose another port, or 0 for any free one",
                  errno.EACCES: "not allowed to listen there (ports below 1024 need root): choose another port",
                  errno.EADDRNOTAVAIL: "not an address of this machine: give one of its own"}
        raise SrnnError(f"{flag}: {reason.get(e.errno, e.strerror or first_line(e))}") from None


def measure(sampler, req, chunks=4):
    """One stream's speed here, in x real time: the loop compiled by a first chunk, then a few more
    timed (what a listener's stream does)."""
    from .generation import STREAM_CHUNK, audio_chunks

    probe = dataclasses.replace(req, n_samples=None, seconds=None, primer=req.primer[:0])
    stream = audio_chunks(sampler, probe, STREAM_CHUNK)
    next(stream)
    t0 = time.perf_counter()
    for _ in range(chunks):
        next(stream)
    stream.close()
    return chunks * STREAM_CHUNK / req.rate / (time.perf_counter() - t0)


def serve(model, req, args, log):
    """--serve: compile and measure, then serve until Ctrl-C or SIGTERM."""
    import signal

    host = args.host or LOCAL
    sampler = model.sampler(args.sample_precision, args.sample_layout)
    station = Station(model, req, sampler, args.max_listeners or 1, 1.0, log)
    server = listen(station, host, args.serve)  # the address is checked before the minutes of compiling
    try:
        log(f"compiling {args.sample} and measuring its speed...")
        station.speed = measure(sampler, req)
        station.max_listeners = args.max_listeners or listener_limit(station.speed)
        bound = server.server_address
        shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        log(f"one stream here is {station.speed:.1f}x real time: up to {station.max_listeners} listener(s) at once"
            f"{'' if args.max_listeners else ' (--max-listeners to change)'}")
        if station.speed < 1.0:
            log("warning: this model generates slower than real time here: the page will stutter")
        log(f"serving {args.sample} at http://{shown}:{bound[1]}/ (Ctrl-C to stop)")
        signal.signal(signal.SIGTERM, _interrupt)
        try:
            server.serve_forever(poll_interval=0.5)
        except KeyboardInterrupt:
            log("stopped serving")
    finally:
        server.server_close()
    return 0


def _interrupt(number, frame):
    raise KeyboardInterrupt
