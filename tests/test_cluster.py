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
    assert (one.host, one.port, one.chief, one.coordinator) == ("::1", 5000, True, "[::1]:5000")


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


def test_a_process_that_leaves_is_waited_for_and_a_stranger_ignored():
    """A process that said hello and stopped before the meeting ended is not counted (JAX's runtime
    would abort the others): it may come back; a connection that is no srnn process changes nothing."""
    port = free_port()
    errors = []
    host = threading.Thread(target=lambda: errors.append(meeting([cluster.Cluster("127.0.0.1", port, 3, 0)])[0]))
    host.start()
    time.sleep(0.3)
    with socket.create_connection(("127.0.0.1", port)) as gone:  # process 1, which then stops
        gone.sendall(f"{cluster.HELLO} 1 3\n".encode())
    with socket.create_connection(("127.0.0.1", port)) as stranger:
        stranger.sendall(b"GET / HTTP/1.0\r\n\r\n")
    time.sleep(1.5)
    assert meeting([cluster.Cluster("127.0.0.1", port, 3, i) for i in (1, 2)]) == [None, None]
    host.join(30)
    assert errors == [None]


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
