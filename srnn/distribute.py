"""Training on several devices or machines with TensorFlow's own engine, tf.distribute.

`mirrored` keeps one copy of the model per local device (MirroredStrategy); `multiworker`
one per device on every machine named in the standard TF_CONFIG variable
(MultiWorkerMirroredStrategy). The global batch (--batchsize) is split across the replicas, each
replica keeps the carried TBPTT states of its own sequences, and the gradient is summed over all
replicas before the elementwise clip, so a step is the same step as on one device.
"""
import json
import os

from .errors import SrnnError

KINDS = ("none", "mirrored", "multiworker")


TASKS = ("chief", "worker")  # MultiWorkerMirroredStrategy's: it has no parameter servers
EXAMPLE = '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": 0}}'


NO_TF_CONFIG = ("--distribute multiworker needs the TF_CONFIG environment variable that names the workers and "
                "this task (see docs/distributed.md)")


def require_tf_config():
    """The parsed TF_CONFIG of a multi-worker run (one line when it is missing or malformed)."""
    cfg = tf_config()
    if cfg is None:
        raise SrnnError(NO_TF_CONFIG)
    return cfg


def tf_config():
    """The parsed TF_CONFIG, or None; a malformed one is a one-line error saying what is wrong
    with it (TensorFlow's own errors come later, as tracebacks, or as a hang)."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return None
    try:
        cfg = json.loads(raw)
    except ValueError:
        raise SrnnError(f"TF_CONFIG is not JSON: expected {EXAMPLE}") from None
    problem = _problem(cfg)
    if problem:
        raise SrnnError(f"TF_CONFIG {problem}: expected {EXAMPLE}")
    return cfg


def _problem(cfg):
    if not isinstance(cfg, dict):
        return "is not a JSON object"
    cluster, task = cfg.get("cluster"), cfg.get("task")
    if not isinstance(cluster, dict) or not cluster:
        return f"has a cluster of {type(cluster).__name__}, not an object naming each task type's addresses"
    for kind, hosts in cluster.items():
        if kind not in TASKS:
            return f"names {kind!r} tasks in its cluster; --distribute multiworker has only {' and '.join(TASKS)}"
        if not isinstance(hosts, list) or not hosts or not all(isinstance(h, str) and h for h in hosts):
            return f"has {kind} {hosts!r} in its cluster, not a list of host:port addresses"
    if len(cluster.get("chief", [])) > 1:
        return "names more than one chief"
    if not isinstance(task, dict):
        return "has no task object (this process's type and index)"
    kind, index = task.get("type"), task.get("index")
    if kind not in cluster:
        return f"gives this task the type {kind!r}, which its cluster does not name ({', '.join(cluster)})"
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(cluster[kind]):
        return f"gives this task the index {index!r}, but its cluster has {len(cluster[kind])} {kind} task(s)"
    return None


def is_chief(kind="multiworker"):
    """Whether this process writes checkpoints, costs.png and logs: always outside a cluster; in a
    cluster, the `chief` task, or worker 0 when there is no chief (TensorFlow's convention). Only
    a `multiworker` run is in a cluster: a TF_CONFIG left in the environment changes no other run."""
    cfg = tf_config() if kind == "multiworker" else None
    if cfg is None:
        return True
    task = cfg["task"]
    if "chief" in cfg["cluster"]:
        return task["type"] == "chief"
    return task["type"] == "worker" and int(task["index"]) == 0


def make_strategy(kind, devices=None):
    """None for `none`, else the tf.distribute strategy. Create it before any other TensorFlow
    work: a multi-worker strategy must set the runtime up itself."""
    if kind not in KINDS:
        raise SrnnError(f"--distribute {kind}: choose one of {', '.join(KINDS)}")
    if kind == "none":
        if devices:
            raise SrnnError("--devices needs --distribute mirrored")
        return None
    from .quiet import import_tensorflow

    tf = import_tensorflow()
    if kind == "mirrored":
        # names are like /device:GPU:0; accept GPU:0, /gpu:0 or the full name
        known = [d.name.lower() for d in tf.config.list_logical_devices()]
        for d in devices or []:
            wanted = d.lower().lstrip("/")
            if not any(k.endswith("/" + wanted) or k.endswith(":" + wanted) for k in known):
                raise SrnnError(f"--devices: no device {d} on this machine (it has {', '.join(known)})")
        return tf.distribute.MirroredStrategy(devices=devices or None)
    require_tf_config()
    if devices:
        raise SrnnError("--devices is for --distribute mirrored; a multi-worker run uses each worker's devices")
    return tf.distribute.MultiWorkerMirroredStrategy()
