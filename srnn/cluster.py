"""Training on several processes (machines) with the JAX engine: `--distribute multiworker` from
Keras' standard variables, as keras.distribution.initialize reads them.

    KERAS_DISTRIBUTION_JOB_ADDRESSES   host:port of process 0 (the coordinator), or every process's
                                       address, comma-separated (then as many as processes)
    KERAS_DISTRIBUTION_NUM_PROCESSES   how many processes
    KERAS_DISTRIBUTION_PROCESS_ID      this process's number, 0 to NUM_PROCESSES - 1

Before JAX's own distributed runtime starts (which ends a process with a C++ abort, not an error,
when a peer never comes), the processes meet at process 0's address: process 0 listens there,
each other process says who it is and what cluster it was told, and every mismatch or absence is
one line, within `timeout` seconds. This module imports no framework (srnn.engine.jax starts the
runtime once the meeting is done).
"""
import dataclasses
import os
import socket
import time

from .errors import SrnnError

ADDRESSES, COUNT, INDEX = ("KERAS_DISTRIBUTION_JOB_ADDRESSES", "KERAS_DISTRIBUTION_NUM_PROCESSES",
                           "KERAS_DISTRIBUTION_PROCESS_ID")
TIMEOUT = 180.0  # seconds for every process to come (--cluster-timeout)
HELLO = "srnn-cluster/1"
joined = None  # the Cluster this process has started (srnn.commands), for the Trainer


@dataclasses.dataclass(frozen=True)
class Cluster:
    host: str  # process 0's, where the processes meet and JAX's coordinator listens
    port: int
    count: int
    index: int

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
                        f"KERAS_DISTRIBUTION_* variables; see the README's 'Training on more than one device')")
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
    return Cluster(host=host, port=port, count=count, index=index)


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
    `timeout` seconds. Process 0 listens on its port (free again when this returns: JAX's
    coordinator takes it next); the others connect to it, retrying until it listens."""
    if cluster.count == 1:
        return
    deadline = time.monotonic() + timeout
    if cluster.chief:
        _host_meeting(cluster, deadline, timeout)
    else:
        _join_meeting(cluster, deadline, timeout)


def _host_meeting(cluster, deadline, timeout):
    try:
        server = socket.create_server(("", cluster.port), family=socket.AF_INET6, dualstack_ipv6=True) \
            if socket.has_dualstack_ipv6() else socket.create_server(("", cluster.port))
    except OSError as e:
        raise SrnnError(f"process 0 cannot listen on port {cluster.port} ({e.strerror or e}): free it, or give "
                        f"{ADDRESSES} another port") from None
    came = {}
    with server:
        while True:
            for index in [i for i, peer in came.items() if not _open(peer)]:
                del came[index]  # gone before the meeting ended (stopped, or restarting): wait for it again
            if len(came) == cluster.count - 1:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                absent = [str(i) for i in range(1, cluster.count) if i not in came]
                _close_all(came, f"error: process(es) {', '.join(absent)} never came")
                raise SrnnError(f"process(es) {', '.join(absent)} of {cluster.count} did not come to "
                                f"{cluster.coordinator} within {timeout:g} s (--cluster-timeout): start them with "
                                f"the same {ADDRESSES} and {COUNT} and their own {INDEX}")
            server.settimeout(min(left, 1.0))  # (each second: has anyone left?)
            try:
                peer, _ = server.accept()
            except socket.timeout:
                continue
            problem, index = _greeting(peer, cluster, came, deadline)
            if index is None and problem is None:  # not an srnn process (a port scan): not ours to stop for
                peer.close()
                continue
            if problem:
                _reply(peer, f"error: {problem}")
                _close_all(came, f"error: {problem}")
                raise SrnnError(problem)
            came[index] = peer
        _close_all(came, "ok")


def _open(peer):
    """Whether a peer that said hello is still there (its end not closed)."""
    try:
        peer.setblocking(False)
        return peer.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True  # open, nothing to read: waiting for the answer
    except OSError:
        return False


def _close_all(came, text):
    for peer in came.values():
        _reply(peer, text)


def _greeting(peer, cluster, came, deadline):
    """(what is wrong with the process that connected, or None; its index): (None, None) for
    something that is not an srnn process."""
    try:
        peer.settimeout(max(min(deadline - time.monotonic(), 10.0), 1.0))
        words = peer.makefile("r").readline().split()
    except OSError:
        words = []
    if len(words) != 3 or words[0] != HELLO or not _digits(words[1]) or not _digits(words[2]):
        return None, None
    index, count = int(words[1]), int(words[2])
    if count != cluster.count:
        return (f"process {index} was told {COUNT}={count}, process 0 {cluster.count}: give every process the same "
                f"variables"), None
    if not 0 < index < cluster.count or index in came:
        return f"two processes say they are process {index}: give each its own {INDEX}", None
    return None, index


def _reply(peer, text):
    try:
        peer.sendall(f"{text}\n".encode())
        peer.close()
    except OSError:
        pass


def _join_meeting(cluster, deadline, timeout):
    while True:
        try:
            conn = socket.create_connection((cluster.host, cluster.port), timeout=5.0)
            break
        except OSError:  # process 0 not listening yet (or not reachable): try again until the deadline
            if time.monotonic() > deadline:
                raise SrnnError(f"process {cluster.index} could not meet process 0 at {cluster.coordinator} within "
                                f"{timeout:g} s (--cluster-timeout): start process 0 there, or check {ADDRESSES}") \
                    from None
            time.sleep(0.2)
    with conn:  # process 0 answers by its own deadline at the latest: at most `timeout` from now
        try:
            conn.sendall(f"{HELLO} {cluster.index} {cluster.count}\n".encode())
            conn.settimeout(timeout + 10.0)
            answer = conn.makefile("r").readline().strip()
        except OSError:
            answer = ""
    if answer != "ok":
        why = answer.removeprefix("error: ") or "it stopped before the meeting ended; start every process again"
        raise SrnnError(f"process 0 at {cluster.coordinator} refused process {cluster.index}: {why}")
