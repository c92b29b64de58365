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


def tf_config():
    """The parsed TF_CONFIG, or None."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return None
    try:
        cfg = json.loads(raw)
        cfg["cluster"], cfg["task"]["type"], int(cfg["task"]["index"])
    except (ValueError, KeyError, TypeError):
        raise SrnnError('TF_CONFIG is not valid: expected {"cluster": {"worker": ["host:port", ...]}, '
                        '"task": {"type": "worker", "index": 0}}') from None
    return cfg


def is_chief():
    """Whether this process writes checkpoints, costs.png and logs: always outside a cluster; in a
    cluster, the `chief` task, or worker 0 when there is no chief (TensorFlow's convention)."""
    cfg = tf_config()
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
    if tf_config() is None:
        raise SrnnError("--distribute multiworker needs the TF_CONFIG environment variable that names "
                        "the workers and this task (see the README)")
    if devices:
        raise SrnnError("--devices is for --distribute mirrored; a multi-worker run uses each worker's devices")
    return tf.distribute.MultiWorkerMirroredStrategy()
