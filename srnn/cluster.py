"""Training on several processes (machines) with the JAX engine: `--distribute multiworker` from
Keras' standard variables, as keras.distribution.initialize reads them.

    KERAS_DISTRIBUTION_JOB_ADDRESSES   host:port of process 0 (the coordinator), or every process's
                                       address, comma-separated (then as many as processes)
    KERAS_DISTRIBUTION_NUM_PROCESSES   how many processes
    KERAS_DISTRIBUTION_PROCESS_ID      this process's number, 0 to NUM_PROCESSES - 1
    SRNN_CLUSTER_SECRET                optional, the same on every process: only a process that
                                       knows it is let in

Before JAX's own distributed runtime starts (which ends a process with a C++ abort, not an error,
when a peer never comes), the processes meet at process 0's address: process 0 listens there,
each other process says who it is and what cluster it was told, and every mismatch or absence is
one line, within `timeout` seconds. This module imports no framework (srnn.engine.jax starts the
runtime once the meeting is done).

The meeting is on the network, where anyone who can reach the port may connect: process 0 listens
on the interface its address names alone, reads a few bytes from each connection (LINE) within a
few seconds (GREETING_TIME), all of them at once, and lets nothing it receives stop it but a
well-formed greeting. With a secret, process 0 sends each connection a random challenge that a
process answers with an HMAC of it under the secret (the secret never crosses the network); a
connection that cannot is refused and never takes a place. Without one, a stranger that speaks
the protocol can take a process's place: docs/distributed.md says to use it only on a private network.
"""
import dataclasses
import hashlib
import hmac
import ipaddress
import os
import re
import secrets
import selectors
import socket
import sys
import time

from .errors import SrnnError

ADDRESSES, COUNT, INDEX = ("KERAS_DISTRIBUTION_JOB_ADDRESSES", "KERAS_DISTRIBUTION_NUM_PROCESSES",
                           "KERAS_DISTRIBUTION_PROCESS_ID")
SECRET = "SRNN_CLUSTER_SECRET"
TIMEOUT = 180.0  # seconds for every process to come (--cluster-timeout)
HELLO = "srnn-cluster/2"  # (2: process 0 speaks first, with its challenge)
LINE = 256  # bytes: the longest line of the meeting's protocol (a greeting is about 100)
ANSWER = 1024  # bytes: process 0's answer, "ok" or one error line
GREETING_TIME = 10.0  # seconds a connection has to greet (a process does at once), and to be challenged
MAX_WAITING = 64  # connections that have not greeted yet: beyond, the oldest is dropped


@dataclasses.dataclass(frozen=True)
class Cluster:
    host: str  # process 0's, where the processes meet and JAX's coordinator listens
    port: int
    count: int
    index: int
    secret: str = dataclasses.field(default=None, repr=False, compare=False)  # SRNN_CLUSTER_SECRET's, or None

    @property
    def chief(self):
        return self.index == 0

    @property
    def coordinator(self):
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"  # IPv6 in brackets


def from_env(env=None):
    """The cluster the Keras variables describe; one line naming the variable for each problem."""
    env = os.environ if env is None else env
    missing = [name for name in (ADDRESSES, COUNT, INDEX) if not env.get(name, "").strip()]
    if missing:
        raise SrnnError(f"--distribute multiworker on JAX needs {', '.join(missing)} (and the other "
                        f"KERAS_DISTRIBUTION_* variables; see docs/distributed.md)")
    count, index = _whole(env, COUNT, 1), _whole(env, INDEX, 0)
    addresses = [a.strip() for a in env[ADDRESSES].split(",")]
    if len(addresses) > 1 and len(addresses) != count:
        raise SrnnError(f"{ADDRESSES} names {len(addresses)} processes but {COUNT} is {count}: give one address per "
                        f"process, or process 0's alone")
    if index >= count:
        raise SrnnError(f"{INDEX}={index} is out of range: the processes are numbered 0 to {count - 1} "
                        f"({COUNT}={count})")
    host, port = _address(addresses[0])
    for other in addresses[1:]:
        _address(other)
    return Cluster(host=host, port=port, count=count, index=index, secret=env.get(SECRET) or None)


def _whole(env, name, lowest):
    text = env[name].strip()
    if not _digits(text) or int(text) < lowest:
        raise SrnnError(f"{name}={text!r} must be a whole number of at least {lowest}")
    return int(text)


def _digits(text):
    """Whether `text` is a whole number int() reads: ASCII digits only (str.isdigit() takes '²')."""
    return text.isascii() and text.isdigit()


def _address(text):
    host, sep, port = text.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    host = host[1:-1] if bracketed else host  # [::1]:1234
    # an IPv6 address needs its brackets: ::1 would read as host ':' and port 1
    if (not sep or not host or "[" in host or "]" in host or (":" in host and not bracketed) or not _digits(port)
            or not 0 < int(port) < 65536):
        raise SrnnError(f"{ADDRESSES}: {text!r} is not host:port (e.g. 10.0.0.1:1234, or an IPv6 address in brackets: "
                        f"[::1]:1234)")
    return host, int(port)


def meet(cluster, timeout=TIMEOUT):
    """Every process of `cluster` present and agreeing on it, or one line saying who is not, within
    `timeout` seconds. Process 0 listens at its address (free again when this returns: JAX's
    coordinator takes it next); the others connect to it, retrying until it listens."""
    if cluster.count == 1:
        return
    deadline = time.monotonic() + timeout
    if cluster.chief:
        _host_meeting(cluster, deadline, timeout)
    else:
        _join_meeting(cluster, deadline, timeout)


def _proof(secret, nonce, index, count):
    """What process `index` answers to process 0's challenge `nonce`: an HMAC of both under the
    secret, or '-' without one."""
    if not secret:
        return "-"
    message = f"{nonce} {index} {count}".encode()
    return hmac.new(secret.encode("utf-8", "surrogateescape"), message, hashlib.sha256).hexdigest()


def _few(indices):
    """Process numbers for a message: the first ten, and how many more."""
    shown = ", ".join(map(str, indices[:10]))
    return shown if len(indices) <= 10 else f"{shown} and {len(indices) - 10} more"


# ---- process 0

def _listen(cluster):
    """A listening socket at process 0's address: on the interface it names alone; on every one
    when it says so (0.0.0.0, or [::] for IPv6 and IPv4)."""
    try:
        family, _, _, _, address = socket.getaddrinfo(cluster.host, cluster.port, type=socket.SOCK_STREAM)[0]
        every = family == socket.AF_INET6 and ipaddress.ip_address(address[0]).is_unspecified
        return socket.create_server(address, family=family, dualstack_ipv6=every and socket.has_dualstack_ipv6())
    except OSError as e:
        raise SrnnError(f"process 0 cannot listen at {cluster.coordinator} ({e.strerror or e}): give {ADDRESSES} "
                        f"an address of process 0's machine (0.0.0.0:PORT for all of them) and a free port") from None


def _host_meeting(cluster, deadline, timeout):
    with _listen(cluster) as server:
        meeting = _Meeting(cluster, server)
        try:
            while not meeting.complete(deadline):
                if time.monotonic() >= deadline:
                    absent = [i for i in range(1, cluster.count) if i not in meeting.came]
                    meeting.answer(f"error: process(es) {_few(absent)} never came")
                    raise SrnnError(f"process(es) {_few(absent)} of {cluster.count} did not come to "
                                    f"{cluster.coordinator} within {timeout:g} s (--cluster-timeout): start them with "
                                    f"the same {ADDRESSES} and {COUNT} and their own {INDEX}")
            meeting.answer("ok")
        finally:
            meeting.close()


@dataclasses.dataclass
class _Guest:
    """A connection that has not greeted yet."""
    nonce: str  # its challenge
    until: float  # when it is dropped if it has not greeted
    data: bytes = b""  # what it has sent so far (at most LINE bytes)


class _Meeting:
    """Process 0's side: each connection read as its bytes come (a selector), none holding up
    another, each bounded in bytes and time."""

    def __init__(self, cluster, server):
        self.cluster, self.server = cluster, server
        server.setblocking(False)
        self.selector = selectors.DefaultSelector()
        self.selector.register(server, selectors.EVENT_READ)
        self.waiting = {}  # socket -> _Guest, in the order they came
        self.came = {}  # process index -> its socket, waiting for the answer

    def complete(self, deadline):
        """Whether every process has come, after waiting for what comes next (a second at most:
        each second, has anyone left?). Raises the first disagreement."""
        for index in [i for i, peer in self.came.items() if not _open(peer)]:
            self.came.pop(index).close()  # gone before the meeting ended (stopped, or restarting): wait for it again
        if len(self.came) == self.cluster.count - 1:
            return True
        now = time.monotonic()
        for peer in [p for p, guest in self.waiting.items() if guest.until <= now]:
            self._drop(peer)  # too slow for a process: a stranger, or one trickling bytes
        for key, _ in self.selector.select(max(min(deadline - now, 1.0), 0.0)):
            if key.fileobj is self.server:
                self._accept()
            else:
                self._read(key.fileobj)
        return False

    def _accept(self):
        while True:
            try:
                peer, _ = self.server.accept()
            except OSError:  # none left (or no file descriptor free now: the next round)
                return
            nonce = secrets.token_hex(16)
            try:
                peer.setblocking(False)
                peer.send(f"{HELLO} {nonce}\n".encode())  # (a few bytes into an empty buffer)
            except OSError:
                peer.close()
                continue
            if len(self.waiting) >= MAX_WAITING:
                self._drop(next(iter(self.waiting)))
            self.waiting[peer] = _Guest(nonce, time.monotonic() + GREETING_TIME)
            self.selector.register(peer, selectors.EVENT_READ)

    def _read(self, peer):
        guest = self.waiting[peer]
        try:
            chunk = peer.recv(LINE - len(guest.data))
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        guest.data += chunk
        line, newline, _ = guest.data.partition(b"\n")
        if not newline:
            if not chunk or len(guest.data) >= LINE:  # closed, or longer than any greeting: not a process
                self._drop(peer)
            return
        self.selector.unregister(peer)
        del self.waiting[peer]
        self._greeting(peer, guest.nonce, line.decode("utf-8", "replace"))  # (bytes that are not text never match)

    def _drop(self, peer):
        self.selector.unregister(peer)
        del self.waiting[peer]
        peer.close()

    def _greeting(self, peer, nonce, text):
        """A process takes its place, or is refused; a disagreement between processes stops the
        meeting (raised); anything else is not an srnn process (a port scan): not ours to stop for."""
        words = text.split()
        if len(words) != 4 or words[0] != HELLO or not _digits(words[1]) or not _digits(words[2]):
            peer.close()
            return
        index, count = int(words[1]), int(words[2])
        proof = _proof(self.cluster.secret, nonce, index, count)
        if not hmac.compare_digest(words[3].encode(), proof.encode()):  # (bytes: str must be ASCII)
            why = (f"did not present process 0's {SECRET}" if self.cluster.secret else
                   f"has an {SECRET} and process 0 none")
            _warn(f"the cluster meeting refused {_peer_name(peer)}, which said it is process {index} and {why}")
            _reply(peer, f"error: process {index} {why}: give every process the same {SECRET} (or none)")
            return
        problem = None
        if count != self.cluster.count:
            problem = (f"process {index} was told {COUNT}={count}, process 0 {self.cluster.count}: give every process "
                       f"the same variables")
        elif not 0 < index < self.cluster.count or index in self.came:
            problem = f"two processes say they are process {index}: give each its own {INDEX}"
        if problem:
            _reply(peer, f"error: {problem}")
            self.answer(f"error: {problem}")
            raise SrnnError(problem)
        self.came[index] = peer

    def answer(self, text):
        """The meeting's end, said to every process that came."""
        for peer in self.came.values():
            _reply(peer, text)
        self.came = {}

    def close(self):
        for peer in list(self.waiting):
            self._drop(peer)
        for peer in self.came.values():
            peer.close()
        self.selector.close()


def _open(peer):
    """Whether a peer that said hello is still there (its end not closed)."""
    try:
        return peer.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True  # open, nothing to read: waiting for the answer
    except OSError:
        return False


def _reply(peer, text):
    try:
        peer.settimeout(1.0)  # (a line into an empty buffer: a peer that reads nothing cannot hold us)
        peer.sendall(f"{text}\n".encode())
    except OSError:
        pass
    peer.close()


def _peer_name(peer):
    try:
        host, port = peer.getpeername()[:2]
    except OSError:
        return "a connection"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _warn(text):
    print(f"warning: {text}", file=sys.stderr)


# ---- the other processes

def _join_meeting(cluster, deadline, timeout):
    with _connect(cluster, deadline, timeout) as conn:
        words = (_read_line(conn, time.monotonic() + GREETING_TIME, LINE) or "").split()
        if len(words) != 2 or words[0] != HELLO or not re.fullmatch("[0-9a-f]{32}", words[1]):
            raise SrnnError(f"process {cluster.index}: what answers at {cluster.coordinator} is not process 0's "
                            f"meeting (another program on that port, or another version of srnn): check {ADDRESSES}")
        proof = _proof(cluster.secret, words[1], cluster.index, cluster.count)
        try:
            conn.sendall(f"{HELLO} {cluster.index} {cluster.count} {proof}\n".encode())
        except OSError:
            pass
        # process 0 answers by its own deadline at the latest: at most `timeout` from now
        answer = _read_line(conn, time.monotonic() + timeout + 10.0, ANSWER) or ""
    if answer != "ok":
        why = answer[len("error: "):] if answer.startswith("error: ") else \
            "it stopped before the meeting ended; start every process again"
        raise SrnnError(f"process 0 at {cluster.coordinator} refused process {cluster.index}: {why}")


def _connect(cluster, deadline, timeout):
    while True:
        try:
            return socket.create_connection((cluster.host, cluster.port), timeout=5.0)
        except OSError:  # process 0 not listening yet (or not reachable): try again until the deadline
            if time.monotonic() > deadline:
                raise SrnnError(f"process {cluster.index} could not meet process 0 at {cluster.coordinator} within "
                                f"{timeout:g} s (--cluster-timeout): start process 0 there, or check {ADDRESSES}") \
                    from None
            time.sleep(0.2)


def _read_line(conn, deadline, limit):
    """One line from `conn` as text (bytes that are not UTF-8 replaced), or None: closed, longer
    than `limit` bytes, or not whole by `deadline`, however slowly its bytes come."""
    data = b""
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0 or len(data) >= limit:
            return None
        try:
            conn.settimeout(left)
            chunk = conn.recv(limit - len(data))
        except OSError:  # (a timeout too)
            return None
        if not chunk:
            return None
        data += chunk
    return data.partition(b"\n")[0].decode("utf-8", "replace")
