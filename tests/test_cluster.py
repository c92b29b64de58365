"""--distribute multiworker on JAX (srnn.cluster): the Keras variables' checks and the processes'
meeting, in this process (threads stand in for the other processes); the two-process training
itself is tests/jax/test_cluster.py."""
import re
import socket
import threading
import time

import pytest

from conftest import assert_clean_error, run_tool
from srnn import cluster
from srnn.errors import SrnnError


def env(addresses="127.0.0.1:1234", count="2", index="0"):
    return {cluster.ADDRESSES: addresses, cluster.COUNT: count, cluster.INDEX: index}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("variables,words", [
    ({}, "needs KERAS_DISTRIBUTION_JOB_ADDRESSES, KERAS_DISTRIBUTION_NUM_PROCESSES, KERAS_DISTRIBUTION_PROCESS_ID"),
    (env(count="two"), "KERAS_DISTRIBUTION_NUM_PROCESSES='two' must be a whole number of at least 1"),
    (env(count="0"), "NUM_PROCESSES='0' must be a whole number of at least 1"),
    (env(index="-1"), "PROCESS_ID='-1' must be a whole number of at least 0"),
    (env(index="2"), "KERAS_DISTRIBUTION_PROCESS_ID=2 is out of range: the processes are numbered 0 to 1"),
    (env(addresses="a:1,b:2,c:3"), "names 3 processes but KERAS_DISTRIBUTION_NUM_PROCESSES is 2"),
    (env(addresses="host"), "'host' is not host:port"),
    (env(addresses="host:99999"), "'host:99999' is not host:port"),
    (env(addresses="a:1,b:x"), "'b:x' is not host:port"),
    (env(count="\u00b2"), "NUM_PROCESSES='\u00b2' must be a whole number"),  # str.isdigit() takes it, int() not
    (env(index="\u00b9"), "PROCESS_ID='\u00b9' must be a whole number"),
    (env(addresses="host:\u00b2"), "'host:\u00b2' is not host:port"),
    (env(addresses="::1"), "'::1' is not host:port (e.g. 10.0.0.1:1234, or an IPv6 address in brackets: [::1]:1234)"),
    (env(addresses="fe80::1:1234"), "'fe80::1:1234' is not host:port"),
    (env(addresses="[::1:1234"), "'[::1:1234' is not host:port"),
])
def test_bad_variables_are_one_line(variables, words):
    with pytest.raises(SrnnError, match=re.escape(words)):
        cluster.from_env(variables)


def test_the_cluster_from_the_variables():
    assert cluster.from_env(env("10.0.0.1:1234,10.0.0.2:2345", "2", "1")) == cluster.Cluster("10.0.0.1", 1234, 2, 1)
    one = cluster.from_env(env("[::1]:5000", "3", "0"))
    assert (one.host, one.port, one.chief, one.coordinator, one.secret) == ("::1", 5000, True, "[::1]:5000", None)
    secret = cluster.from_env({**env(), cluster.SECRET: "open sesame"})
    assert secret.secret == "open sesame" and "sesame" not in repr(secret)  # (a log of the cluster never shows it)


def meeting(clusters, timeout=20.0):
    """meet() of each cluster in its own thread, as processes would: each one's error or None."""
    errors = [None] * len(clusters)

    def run(i, c):
        try:
            cluster.meet(c, timeout)
        except SrnnError as e:
            errors[i] = str(e)

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(clusters)]
    for t in threads:
        t.start()
        time.sleep(0.05)
    for t in threads:
        t.join(60)
    return errors


def test_the_processes_meet_and_any_disagreement_is_one_line_for_all():
    port = free_port()
    assert meeting([cluster.Cluster("127.0.0.1", port, 3, i) for i in (1, 0, 2)]) == [None, None, None]
    port = free_port()
    errors = meeting([cluster.Cluster("127.0.0.1", port, 2, 0), cluster.Cluster("127.0.0.1", port, 3, 1)])
    assert errors[0] == ("process 1 was told KERAS_DISTRIBUTION_NUM_PROCESSES=3, process 0 2: give every process "
                         "the same variables")
    assert errors[1].startswith(f"process 0 at 127.0.0.1:{port} refused process 1: process 1 was told")
    port = free_port()
    errors = meeting([cluster.Cluster("127.0.0.1", port, 3, i) for i in (0, 1, 1)])
    assert errors[0] == "two processes say they are process 1: give each its own KERAS_DISTRIBUTION_PROCESS_ID"


def greet(port, index, count, secret=None):
    """A connection that says it is process `index`, as a process does (the challenge answered)."""
    conn = socket.create_connection(("127.0.0.1", port), timeout=5)
    hello, nonce = conn.makefile("rb").readline().decode().split()
    conn.sendall(f"{hello} {index} {count} {cluster._proof(secret, nonce, index, count)}\n".encode())
    return conn


def listening(port, host="127.0.0.1"):
    """Once process 0 listens at `port` (a connection that says nothing and leaves)."""
    for _ in range(100):
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens at {port}")


def host_meeting(c, timeout=20.0):
    """Process 0's meeting in a thread: (the thread, its error in a list once done)."""
    errors = []
    host = threading.Thread(target=lambda: errors.append(meeting([c], timeout)[0]))
    host.start()
    listening(c.port)
    return host, errors


def test_a_process_that_leaves_is_waited_for_and_a_stranger_ignored():
    """A process that said hello and stopped before the meeting ended is not counted (JAX's runtime
    would abort the others): it may come back; a connection that is no srnn process changes nothing."""
    port = free_port()
    host, errors = host_meeting(cluster.Cluster("127.0.0.1", port, 3, 0))
    greet(port, 1, 3).close()  # process 1, which then stops
    with socket.create_connection(("127.0.0.1", port)) as stranger:
        stranger.sendall(b"GET / HTTP/1.0\r\n\r\n")
    time.sleep(1.5)
    assert meeting([cluster.Cluster("127.0.0.1", port, 3, i) for i in (1, 2)]) == [None, None]
    host.join(30)
    assert errors == [None]


def closed_by_peer(conn):
    """Whether the other end has closed `conn` (what it sent before is read and dropped)."""
    conn.settimeout(5)
    try:
        while conn.recv(4096):
            pass
    except ConnectionResetError:
        pass
    return True


def test_strangers_bytes_neither_stop_nor_hold_up_the_meeting():
    """Process 0 survives any bytes: a silent connection, one long line, bytes that are not UTF-8,
    a greeting with '²' (str.isdigit() takes it) are each dropped without a word, and the
    processes meet at once beside them (each connection is read as its bytes come)."""
    port = free_port()
    t0 = time.monotonic()
    host, errors = host_meeting(cluster.Cluster("127.0.0.1", port, 3, 0))
    silent = socket.create_connection(("127.0.0.1", port))
    strangers = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
    try:
        strangers[0].sendall(b"x" * 100_000)  # no newline: process 0 stops reading at LINE bytes
    except OSError:  # (and may close it before all is sent)
        pass
    strangers[1].sendall(b"\xff\xfe\x00\x81 srnn\n")
    strangers[2].sendall(f"{cluster.HELLO} \u00b2 3 -\n".encode())
    assert all(closed_by_peer(s) for s in strangers)
    assert meeting([cluster.Cluster("127.0.0.1", port, 3, i) for i in (1, 2)]) == [None, None]
    host.join(30)
    assert errors == [None] and time.monotonic() - t0 < 5  # (a connection has GREETING_TIME = 10 s to greet)
    for s in [silent, *strangers]:
        s.close()


def trickle(port, stop):
    """A connection that sends a byte every 0.1 s, never a whole line, until `stop` is set."""
    with socket.create_connection(("127.0.0.1", port)) as conn:
        while not stop.wait(0.1):
            try:
                conn.sendall(b"s")
            except OSError:
                return


def test_the_deadline_holds_however_slowly_bytes_come(monkeypatch):
    """One byte every 0.1 s: each read returns at once, and a timeout per read never came (46 s with a
    6 s timeout). The meeting's own deadline holds, and a connection has GREETING_TIME to greet."""
    stop = threading.Event()
    port = free_port()
    t0 = time.monotonic()
    host, errors = host_meeting(cluster.Cluster("127.0.0.1", port, 2, 0), timeout=1.0)
    slow = threading.Thread(target=trickle, args=(port, stop))
    slow.start()
    host.join(30)
    assert errors[0].startswith("process(es) 1 of 2 did not come") and time.monotonic() - t0 < 3
    monkeypatch.setattr(cluster, "GREETING_TIME", 0.5)  # dropped after it, and the processes meet
    port = free_port()
    host, errors = host_meeting(cluster.Cluster("127.0.0.1", port, 2, 0), timeout=5.0)
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(b"srnn")
        t1 = time.monotonic()
        assert closed_by_peer(conn) and time.monotonic() - t1 < 2
    assert meeting([cluster.Cluster("127.0.0.1", port, 2, 1)]) == [None]
    host.join(30)
    stop.set()
    slow.join(5)
    assert errors == [None]


def test_a_secret_lets_in_only_the_processes_that_know_it(capsys):
    """SRNN_CLUSTER_SECRET: a process without it, or with another, is refused in one line and takes
    no place (process 0 says so and waits on); with it, the processes meet."""
    port = free_port()
    host, errors = host_meeting(cluster.Cluster("127.0.0.1", port, 2, 0, secret="open sesame"))
    refused = (f"process 0 at 127.0.0.1:{port} refused process 1: process 1 did not present process 0's "
               f"SRNN_CLUSTER_SECRET: give every process the same SRNN_CLUSTER_SECRET (or none)")
    for secret in (None, "open barley"):
        assert meeting([cluster.Cluster("127.0.0.1", port, 2, 1, secret=secret)]) == [refused]
    with greet(port, 1, 2, "open barley") as stranger:  # a well-formed greeting holding on
        assert stranger.makefile("rb").readline().startswith(b"error: process 1 did not present")
    assert meeting([cluster.Cluster("127.0.0.1", port, 2, 1, secret="open sesame")]) == [None]
    host.join(30)
    assert errors == [None]
    warnings = capsys.readouterr().err.splitlines()
    assert len(warnings) == 3 and all(w.startswith("warning: the cluster meeting refused 127.0.0.1:") and
                                      w.endswith("which said it is process 1 and did not present process 0's "
                                                 "SRNN_CLUSTER_SECRET")
                                      for w in warnings), warnings
    port = free_port()  # a secret that process 0 does not have is refused as well
    host, errors = host_meeting(cluster.Cluster("127.0.0.1", port, 2, 0), timeout=1.0)
    assert meeting([cluster.Cluster("127.0.0.1", port, 2, 1, secret="open sesame")]) == [(
        f"process 0 at 127.0.0.1:{port} refused process 1: process 1 has an SRNN_CLUSTER_SECRET and process 0 none: "
        f"give every process the same SRNN_CLUSTER_SECRET (or none)")]
    host.join(30)
    assert errors[0].startswith("process(es) 1 of 2 did not come")


@pytest.mark.parametrize("address,every", [("127.0.0.1", False), ("0.0.0.0", True)])
def test_the_meeting_listens_on_the_interface_its_address_names(address, every):
    """Process 0 listens on its address's interface alone (127.0.0.2 is free beside 127.0.0.1), on
    every one only when the address says so."""
    port = free_port()
    host, errors = host_meeting(cluster.Cluster(address, port, 2, 0))
    with socket.socket() as other:
        try:
            other.bind(("127.0.0.2", port))
            taken = False
        except OSError:
            taken = True
    assert taken == every
    assert meeting([cluster.Cluster("127.0.0.1", port, 2, 1)]) == [None]
    host.join(30)
    assert errors == [None]


@pytest.mark.parametrize("sends", [b"\x00\xff\x13binary" * 40, b""])
def test_a_process_whose_address_answers_otherwise_is_one_line(monkeypatch, sends):
    """Another program on process 0's port (binary, or nothing within GREETING_TIME): one line."""
    monkeypatch.setattr(cluster, "GREETING_TIME", 0.5)
    with socket.create_server(("127.0.0.1", 0)) as other:
        port = other.getsockname()[1]

        def serve():
            conn, _ = other.accept()
            with conn:
                conn.sendall(sends)
                time.sleep(1.0)
        server = threading.Thread(target=serve)
        server.start()
        errors = meeting([cluster.Cluster("127.0.0.1", port, 2, 1)], timeout=2.0)
        server.join(5)
    assert errors == [(f"process 1: what answers at 127.0.0.1:{port} is not process 0's meeting (another program "
                       f"on that port, or another version of srnn): check KERAS_DISTRIBUTION_JOB_ADDRESSES")]


def test_a_process_that_never_comes_is_an_error_within_the_timeout():
    port = free_port()
    t0 = time.monotonic()
    errors = meeting([cluster.Cluster("127.0.0.1", port, 3, 0), cluster.Cluster("127.0.0.1", port, 3, 1)],
                     timeout=1.0)
    assert time.monotonic() - t0 < 10
    assert errors[0] == (f"process(es) 2 of 3 did not come to 127.0.0.1:{port} within 1 s (--cluster-timeout): start "
                         f"them with the same KERAS_DISTRIBUTION_JOB_ADDRESSES and KERAS_DISTRIBUTION_NUM_PROCESSES "
                         f"and their own KERAS_DISTRIBUTION_PROCESS_ID")
    assert errors[1] == f"process 0 at 127.0.0.1:{port} refused process 1: process(es) 2 never came"
    alone = meeting([cluster.Cluster("127.0.0.1", free_port(), 2, 1)], timeout=1.0)
    assert alone[0].startswith("process 1 could not meet process 0 at 127.0.0.1:") and "within 1 s" in alone[0]


def test_the_command_says_it_in_one_line_and_writes_nothing(mini_root, tmp_path):
    """train_srnn.py --distribute multiworker on JAX: a wrong variable before any work; a process
    0 whose peers never come, after its data checks, within --cluster-timeout (no JAX loads for
    either: the meeting comes first)."""
    import shutil

    shutil.copytree(mini_root / "blizzard", tmp_path / "blizzard")
    argv = ["--exp=mini", "--slowdim=16", "--dim=16", "--batchsize=2", "--trainstop=4", "--validstop=6",
            "--distribute=multiworker", "--cluster-timeout=1"]
    jax = {"KERAS_BACKEND": "jax"}
    assert_clean_error(run_tool("train_srnn.py", *argv, cwd=tmp_path, env={**jax, **env(index="5")}),
                       "KERAS_DISTRIBUTION_PROCESS_ID=5 is out of range")
    proc = run_tool("train_srnn.py", *argv, cwd=tmp_path, env={**jax, **env(f"127.0.0.1:{free_port()}")})
    assert_clean_error(proc, "process(es) 1 of 2 did not come to 127.0.0.1:", "within 1 s")
    assert "multiworker: waiting for 1 other process(es)" in proc.stdout
    assert_clean_error(run_tool("train_srnn.py", *argv, "--batchsize=3", "--validstop=7", cwd=tmp_path,
                                env={**jax, **env(f"127.0.0.1:{free_port()}")}),
                       "--batchsize 3 does not split over 2 processes")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".mini_srnn_sz16.lock", "blizzard"]  # (the run's lock)
