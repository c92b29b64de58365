"""The checkpoint file: one HDF5 file (h5py) with the weights, the model's hyperparameters and,
when written by training, the optimizer state and the training history for an exact resume.

Layout:
    attrs   format="srnn-checkpoint", version, config (ModelConfig as JSON: the architecture)
    weights/<tier>/<layer>/<weight>   float32 arrays, names from SampleRNN.named_weights(); a sparse
                                      model's masks (srnn.sparse) as uint8 0/1 arrays
    optimizer/<index>                 the optimizer's variables in order (attrs: name)
    train   attrs: epoch (last completed, from 0), seed, exp, learning_rate, train_bits, ...
            datasets: arrays of the training position (state_0, state_1, ...: the carried states
            of an interrupted run, one per RNN layer)

Version 1 files (written before the tiers became layers) hold the original's three-tier model
under its old layer names; `load` renames them, so they load and sample as before.
"""
import dataclasses
import io
import json
import os

import math

import h5py
import numpy as np

from . import memory, sparse
from .atomic import atomic_path
from .config import ModelConfig
from .errors import SrnnError, first_line
from .labels import MAX_LABELS, label_problem

FORMAT = "srnn-checkpoint"
VERSION = 2
# version 1's layer names -> version 2's (the original's model: frame0 = slow, frame1 = mid)
V1_LAYERS = {"slow_gru": "frame0/rnn0", "slow_out": "frame0/out", "mid_in": "frame1/in", "mid_gru": "frame1/rnn0",
             "mid_out": "frame1/out", "embedding": "sample/embedding", "sample_in": "sample/in",
             "sample_h1": "sample/h1", "sample_h2": "sample/h2", "sample_out": "sample/out"}
V1_STATES = {"h_slow": "state_0", "h_mid": "state_1"}


def _v1_name(name):
    """A version 1 file's weight name (layer/weight) under version 2's."""
    layer, sep, weight = name.partition("/")
    return f"{V1_LAYERS.get(layer, layer)}/{weight}" if sep else name


def _upgrade_v1(weights, train):
    """A version 1 file's weights and training position under version 2's names."""
    renamed = {_v1_name(name): value for name, value in weights.items()}
    if train:
        train = {V1_STATES.get(k, k): v for k, v in train.items()}
    return renamed, train


@dataclasses.dataclass
class Checkpoint:
    path: str
    config: ModelConfig
    weights: dict  # name -> array
    optimizer: list = None  # [(name, array)] or None for a weights-only file
    train: dict = None  # epoch, seed, exp, histories; None for a weights-only file


def _masks(config):
    """The names of a sparse model's masks (none for a dense one)."""
    return set(sparse.mask_suffixes(config).values()) if config.sparse_block else set()


def _write(path, config, weights, optimizer=None, train=None):
    """The one writer of the format: config, (name, array) weights, optimizer variables, training
    state; atomically, so a crash leaves the previous file (if any) untouched. A sparse model's
    config says the sparsity its masks hold, and the masks are written in a byte per weight."""
    masks = _masks(config)
    weights = [(name, value.astype(np.uint8) if name in masks else value) for name, value in weights]
    if masks:
        config = dataclasses.replace(config, sparsity=round(sparse.mask_sparsity(
            [value for name, value in weights if name in masks]), 6))
    # The file is built in memory and written in one go: a full disk is then one OSError from a
    # plain write, never an I/O error inside HDF5 (whose half-closed objects crashed the process)
    image = io.BytesIO()
    with h5py.File(image, "w") as f:
        f.attrs["format"] = FORMAT
        f.attrs["version"] = VERSION
        f.attrs["config"] = config.to_json()
        g = f.create_group("weights")
        for name, value in weights:
            g.create_dataset(name, data=value)
        if optimizer is not None:
            og = f.create_group("optimizer")
            for i, v in enumerate(optimizer.variables):
                ds = og.create_dataset(f"{i:05d}", data=np.asarray(v.numpy()))
                ds.attrs["name"] = v.path
        if train is not None:
            tg = f.create_group("train")
            for key, value in train.items():
                if isinstance(value, np.ndarray):
                    tg.create_dataset(key, data=value)
                else:
                    tg.attrs[key] = json.dumps(value)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as out:
            out.write(image.getbuffer())


def save(path, model, optimizer=None, train=None):
    """Write a model's checkpoint (with the optimizer state and training state, when given); a
    sparse model's config with the sparsity its masks hold now."""
    _write(path, model.cfg, [(name, np.asarray(w.numpy())) for name, w in model.named_weights()], optimizer, train)


def invalid(path, what):
    """The one error for a file that is not what srnn writes: it may come from anyone."""
    return SrnnError(f"{path} is not a valid srnn checkpoint: {what}")


def load(path):
    """Read a checkpoint, the one way to: every way a file can be wrong, its values included,
    becomes a one-line SrnnError.

    A checkpoint is untrusted input (it may be handed over, or crafted): the whole file is checked
    against the architecture its config declares before any array is read, so that nothing it
    names can make srnn allocate more than the file holds, read another file, or write outside
    its output folder (see `_validate`)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise SrnnError(f"{path} not found: give a checkpoint written by train_srnn.py (*.h5)")
    if os.path.isdir(path):
        raise SrnnError(f"{path} is a folder: give a checkpoint file (*.h5)")
    if not os.path.isfile(path):  # a FIFO or a device: reading it may never end
        raise SrnnError(f"{path} is not a regular file: give a checkpoint file (*.h5)")
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != FORMAT or "weights" not in f:
                raise SrnnError(
                    f"{path} is an HDF5 file but not an srnn checkpoint: give a file written by "
                    f"train_srnn.py"
                )
            config, version, objects = _validate(path, f)
            weights = {name[len("weights/"):]: obj[()] for name, obj in objects.items()
                       if name.startswith("weights/") and isinstance(obj, h5py.Dataset)}
            optimizer = None
            if "optimizer" in f:
                og = f["optimizer"]
                optimizer = [(_text(og[k].attrs.get("name", k)), og[k][()]) for k in sorted(og)]
            train = None
            if "train" in f:
                train = {k: json.loads(v) for k, v in f["train"].attrs.items()}
                train.update({k: f["train"][k][()] for k in f["train"]})
            if version < 2:
                weights, train = _upgrade_v1(weights, train)
            problem = _mask_problem(weights, config)
            if problem:
                raise invalid(path, problem)
            if train is not None:
                problem = _train_problem(train, config)
                if problem:
                    raise invalid(path, f"its training state {problem}")
    except SrnnError:
        raise
    except (OSError, KeyError, ValueError, RuntimeError, TypeError) as e:
        raise SrnnError(
            f"{path} cannot be read as an HDF5 checkpoint ({first_line(e)}); it may be truncated or "
            f"not a checkpoint: use another file"
        ) from None
    ckpt = Checkpoint(path=path, config=config, weights=weights, optimizer=optimizer, train=train)
    _check_values(ckpt)  # the values last: a file that is not a checkpoint says so first
    return ckpt


def _mask_problem(weights, config):
    """What is wrong with a sparse model's masks, in words, or None; the masks become float32 0/1
    arrays in `weights` (as the model holds them)."""
    masks = sorted(_masks(config))
    rows, cols = config.sparse_block or (1, 1)
    for name in masks:
        m = weights[name]
        if not np.all((m == 0) | (m == 1)):
            return f"its mask {name} holds values other than 0 and 1"
        blocks = m[::cols, ::rows]
        if not np.array_equal(m, sparse.expand(blocks, (rows, cols))):
            return f"its mask {name} is not made of whole {rows}x{cols} blocks"
        if not blocks.any(axis=0).all():
            return f"its mask {name} prunes every input of some outputs"
        weights[name] = m.astype(np.float32)
    if masks:
        held = sparse.mask_sparsity([weights[name] for name in masks])
        if abs(held - config.sparsity) > 1e-5:
            return f"its masks prune {held:.6f} of their weights, but its config says sparsity {config.sparsity:.6f}"
    return None


def _text(value):
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


# Adam's variables: its iteration count and learning rate, and two moments per weight
OPTIMIZER_EXTRA = 2
MAX_STATE_ROWS = 1 << 16  # a carried state's rows: the batch of the run that wrote it
MAX_EPOCH = 10 ** 6  # the loss histories hold one entry per epoch


def _validate(path, f):
    """The file as a whole against the architecture its config declares: (config, version,
    {name: object} of everything in it). Raises `invalid` for anything srnn would not write."""
    version, config = _header(path, f)
    shapes = config.weight_shapes()
    # every weight is in the file (no unwritten or compressed arrays, `_objects`): a config that
    # declares more than the file can hold is a lie, found before anything is allocated
    params = sum(math.prod(s) for s in shapes.values())
    masks = set(sparse.mask_suffixes(config).values()) if config.sparse_block else set()
    least = sum(math.prod(s) * (1 if name in masks else 2) for name, s in shapes.items())
    size = os.path.getsize(path)
    if least > size:  # float16 weights at the least (srnn writes float32), uint8 masks
        raise invalid(path, f"it declares a model of {params:,} parameters ({config.describe()}) in a file of "
                            f"{size:,} bytes")
    objects = _objects(path, f, limit=3 * len(shapes) + len(config.state_sizes()) + 64)
    memory.check(sum(obj.size * obj.dtype.itemsize for obj in objects.values() if isinstance(obj, h5py.Dataset)),
                 f"reading {path}", "use a machine with more memory")
    _check_weights(path, config, version, objects, shapes)
    if "optimizer" in f:
        _check_optimizer(path, objects, shapes)
    if "train" in f:
        _check_states(path, config, version, objects)
    return config, version, objects


def _header(path, f):
    """The format version and the model's settings, with its labels' names checked."""
    version = f.attrs.get("version", 1)
    if not isinstance(version, (int, np.integer)) or int(version) not in (1, VERSION):
        raise invalid(path, f"unknown format version {_short(version)}")
    try:
        config = ModelConfig.from_json(_text(f.attrs["config"]))
    except (KeyError, ValueError, TypeError, AttributeError) as e:
        raise invalid(path, f"damaged model description ({first_line(e)})") from None
    if len(config.labels) > MAX_LABELS:
        raise invalid(path, f"{len(config.labels)} labels, more than {MAX_LABELS}")
    for label in config.labels:  # the rule preprocess follows: a label is a safe part of a file name
        problem = label_problem(label)
        if problem:
            raise invalid(path, f"the label {problem}")
    return int(version), config


def _check_weights(path, config, version, objects, shapes):
    """Only srnn's three groups; numbers only; exactly the model's weights, in their shapes."""
    known = {"weights", "optimizer", "train"}
    found = {}
    for name, obj in objects.items():
        top, _, rest = name.partition("/")
        if top not in known or (not rest and not isinstance(obj, h5py.Group)):
            raise invalid(path, f"it holds {name!r}, which srnn does not write")
        if not isinstance(obj, h5py.Dataset):
            continue
        if obj.dtype.kind not in "fiu" or obj.dtype.itemsize > 16:
            what = f"weight {rest}" if top == "weights" else name
            raise invalid(path, f"{what} is not an array of numbers ({obj.dtype})")
        if top == "weights":
            found[_v1_name(rest) if version < 2 else rest] = obj
    for name, shape in shapes.items():
        if name not in found:
            raise invalid(path, f"it lacks the weight {name} of a model with {config.describe()}")
        if tuple(found[name].shape) != shape:
            raise invalid(path, f"weight {name} has shape {found[name].shape}, a model with "
                                f"{config.describe()} needs {shape}")
        if found[name].dtype.kind not in ("fu" if name in _masks(config) else "f"):
            raise invalid(path, f"weight {name} holds {found[name].dtype}, not floats")
    extra = sorted(set(found) - set(shapes))
    if extra:
        raise invalid(path, f"weight {extra[0]} is not part of a model with {config.describe()}")


def _check_optimizer(path, objects, shapes):
    moments = [obj for name, obj in objects.items() if name.startswith("optimizer/")]
    if len(moments) > 2 * len(shapes) + OPTIMIZER_EXTRA:
        raise invalid(path, f"{len(moments)} optimizer variables, more than the model's Adam has")
    allowed = {()} | set(shapes.values())
    for obj in moments:
        if not isinstance(obj, h5py.Dataset) or tuple(obj.shape) not in allowed:
            raise invalid(path, f"{obj.name} has the shape of no weight of the model")


def _check_states(path, config, version, objects):
    """The carried TBPTT states: one per RNN layer, its width, one batch size for all."""
    sizes = config.state_sizes()
    rows = set()
    v1_states = V1_STATES if version < 2 else {}
    for name, obj in objects.items():
        if not name.startswith("train/"):
            continue
        key = v1_states.get(name[len("train/"):], name[len("train/"):])
        i = key[len("state_"):] if key.startswith("state_") else ""
        if not (isinstance(obj, h5py.Dataset) and i.isascii() and i.isdigit() and int(i) < len(sizes)
                and len(obj.shape) == 2 and obj.shape[1] == sizes[int(i)]
                and 1 <= obj.shape[0] <= MAX_STATE_ROWS):
            raise invalid(path, f"{name} is no carried state of a model with {config.describe()}")
        rows.add(obj.shape[0])
    if len(rows) > 1:
        raise invalid(path, "its carried states disagree on the batch size")


def _objects(path, f, limit):
    """{name: Group or Dataset} of everything in the file, reached only through hard links (a
    soft or external link may point anywhere, another file included), with each dataset's data
    in the file itself: no external storage, no virtual dataset, no filters (srnn compresses
    nothing, and a compressed array could declare far more than the file holds), and every byte it
    declares written (an unwritten chunked dataset reads as gigabytes of zeros)."""
    found = {}
    stack = [("", f)]
    while stack:
        prefix, group = stack.pop()
        for key in group:
            name = prefix + key
            link = group.get(key, getlink=True)
            if isinstance(link, h5py.SoftLink):
                raise invalid(path, f"{name} is a soft link (to {_short(link.path)})")
            if isinstance(link, h5py.ExternalLink):
                raise invalid(path, f"{name} is an external link (to {_short(link.filename)}): srnn reads no "
                                    f"other file")
            if not isinstance(link, h5py.HardLink):
                raise invalid(path, f"{name} is a link of an unknown kind")
            obj = group[key]
            found[name] = obj
            if len(found) > limit:
                raise invalid(path, f"it holds more than {limit} objects, more than its model has")
            if isinstance(obj, h5py.Group):
                stack.append((name + "/", obj))
            elif isinstance(obj, h5py.Dataset):
                _check_storage(path, name, obj)
            else:
                raise invalid(path, f"{name} is neither an array nor a group")
    return found


def _check_storage(path, name, ds):
    if ds.external:
        raise invalid(path, f"{name} is stored in another file (HDF5 external storage): srnn reads no other file")
    if ds.is_virtual:
        raise invalid(path, f"{name} is a virtual dataset that reads other files")
    if ds.id.get_create_plist().get_nfilters():
        raise invalid(path, f"{name} is compressed or filtered, which srnn never writes")
    if ds.dtype.kind in "fiu" and ds.id.get_storage_size() < ds.size * ds.dtype.itemsize:
        raise invalid(path, f"{name} declares {ds.size * ds.dtype.itemsize:,} bytes of which the file holds "
                            f"{ds.id.get_storage_size():,} (an unwritten or cut dataset)")


def _short(value):
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _number(v, finite=True):
    return (isinstance(v, (int, float)) and not isinstance(v, bool)
            and (not finite or math.isfinite(v)))


def _count(v, lo=0, hi=None):
    return isinstance(v, int) and not isinstance(v, bool) and v >= lo and (hi is None or v <= hi)


POSITION = ("next_batch", "next_chunk", "partial_total", "partial_count", "partial_chunks")


def _train_problem(train, config):
    """What is wrong with a training state's values, in words, or None: each field's type and
    range (a resume trusts them all)."""
    from .options import SEED_LIMIT

    if "epoch" not in train:
        return "has no epoch"
    epoch = train["epoch"]
    if not _count(epoch, -1, MAX_EPOCH):
        return f"says epoch is {_short(epoch)}, not an epoch from -1 to {MAX_EPOCH:,}"
    checks = {
        "seed": (_count(train.get("seed", 0), 0, SEED_LIMIT - 1), "a seed in [0, 2^32)"),
        "exp": (isinstance(train.get("exp", ""), str), "text"),
        "precision": (isinstance(train.get("precision", ""), str), "text"),
        "learning_rate": (_number(train.get("learning_rate", 1.0)) and train.get("learning_rate", 1.0) > 0,
                          "a positive number"),
        "loss_scale": (_number(train.get("loss_scale", 1.0)) and train.get("loss_scale", 1.0) > 0,
                       "a positive number"),
        "loss_scale_good": (_count(train.get("loss_scale_good", 0)), "a count"),
        "test_bits": (_number(train.get("test_bits", 0.0), finite=False), "a number"),
    }
    for key in ("next_batch", "next_chunk", "partial_chunks"):
        checks[key] = (_count(train.get(key, 0), 0, 2 ** 62), "a count")
    for key in ("partial_total", "partial_count"):
        checks[key] = (_number(train.get(key, 0.0)) and train.get(key, 0.0) >= 0, "a non-negative number")
    for key in ("train_bits", "valid_bits"):
        v = train.get(key, [])
        checks[key] = (isinstance(v, list) and len(v) <= epoch + 1 and all(_number(x) for x in v),
                       "a list of finite numbers, one per epoch")
    rows = train.get("valid_label_bits", [])
    checks["valid_label_bits"] = (
        isinstance(rows, list) and len(rows) <= epoch + 1
        and all(isinstance(r, list) and len(r) == config.n_labels and all(_number(x, False) for x in r) for r in rows),
        "a list of per-label losses, one per epoch")
    row = train.get("test_label_bits", [])
    checks["test_label_bits"] = (isinstance(row, list) and len(row) in (0, config.n_labels)
                                 and all(_number(x, False) for x in row), "a list of per-label losses")
    for key, (ok, what) in checks.items():
        if not ok:
            return f"says {key} is {_short(train[key])}, not {what}"
    if any(k in train for k in POSITION) and not all(k in train for k in POSITION):
        return f"has only part of the position in an epoch ({', '.join(k for k in POSITION if k in train)})"
    if "loss_scale" in train and "loss_scale_good" not in train:
        return "has a loss scale without its count of good steps"
    return _schedule_problem(train)


def _schedule_problem(train):
    """What is wrong with a training state's pruning schedule (srnn.sparse.Schedule), or None."""
    present = [k for k in sparse.STATE_KEYS if k in train]
    if not present:
        return None
    if len(present) != len(sparse.STATE_KEYS):
        return f"has only part of the pruning schedule ({', '.join(present)})"
    for key in ("sparsity_target", "sparsity_initial"):
        if not (_number(train[key]) and 0 <= train[key] < 1):
            return f"says {key} is {train[key]!r}, not a sparsity in [0, 1)"
    for key in ("prune_start", "prune_end"):
        if not _count(train[key], 0, sparse.MAX_STEP):
            return f"says {key} is {train[key]!r}, not an optimizer step"
    if train["prune_start"] > train["prune_end"]:
        return "has a pruning schedule that ends before it starts"
    if train["sparsity_initial"] > train["sparsity_target"]:
        return "has a pruning schedule whose sparsity falls"
    return None


# the settings that shape the weights (sample_rate and qtype do not, and are checked by the CLI)
ARCHITECTURE = ("frames", "rnn", "rnn_layers", "skip", "slowdim", "dim", "emb_size", "q_levels", "labels")


def check_compatible(ckpt, config):
    """Raise a one-line error naming both architectures when `ckpt` cannot fill a model of
    `config`."""
    if any(getattr(ckpt.config, k) != getattr(config, k) for k in ARCHITECTURE):
        raise SrnnError(
            f"{ckpt.path} holds a model with {ckpt.config.describe()}, but the flags ask for "
            f"{config.describe()}: leave the architecture flags out to take them from the file"
        )


def apply_weights(ckpt, model):
    """Assign the file's weights to `model` (whose config must be compatible)."""
    check_compatible(ckpt, model.cfg)
    new_masks = _masks(model.cfg) - _masks(ckpt.config)  # a dense file into a model to prune: nothing pruned yet
    for name, w in model.named_weights():
        if name in new_masks:
            w.assign(np.ones(w.shape, np.float32))
            continue
        if name not in ckpt.weights:
            raise SrnnError(f"{ckpt.path} lacks the weight {name}: the file is incomplete; use another checkpoint")
        value = ckpt.weights[name]
        if tuple(value.shape) != tuple(w.shape):
            raise SrnnError(
                f"{ckpt.path}: weight {name} has shape {value.shape}, the model needs {tuple(w.shape)}"
            )
        w.assign(value)


def _check_values(ckpt):
    """What `load` refuses in the values themselves (the shapes checked before)."""
    problem = _values_problem(ckpt.weights, ckpt.config)
    if problem:
        raise SrnnError(f"{ckpt.path}: {problem}: use an earlier checkpoint")


def _values_problem(weights, config):
    """What makes `weights` compute NaN or infinities, in words, or None. They are looked at as the
    model computes with them: in float32 (a float64 1e300 is finite in the file, infinite in the
    model), and each weight-normalised kernel w = g * v / ||v|| (srnn.layers.weight_norm) with its
    mask, whose column norm must be finite and above 0 (a column that is zero where its mask keeps
    weights divides 0 by 0; the masks themselves never prune a whole column, see `load`)."""
    with np.errstate(all="ignore"):
        for name, value in weights.items():
            if not np.all(np.isfinite(value)):
                return f"weight {name} holds NaN or infinite values"
            if not np.all(np.isfinite(np.asarray(value, np.float32))):
                return (f"weight {name} holds {float(np.max(np.abs(value))):g}, beyond float32's range (the model "
                        f"computes in float32)")
        for v_name, g_name, mask_name in _normalised(weights, config):
            v = np.asarray(weights[v_name], np.float32)
            if mask_name:
                v = v * np.asarray(weights[mask_name], np.float32)
            norm = np.sqrt(np.sum(np.square(v), axis=0))
            w = v * (np.asarray(weights[g_name], np.float32) / norm)
            bad = ~(np.isfinite(norm) & (norm > 0) & np.all(np.isfinite(w), axis=0))
            if bad.any():
                j = int(np.argmax(bad))
                return (f"weight {v_name}'s column {j} has the norm {norm[j]:g}"
                        f"{' where its mask keeps weights' if mask_name else ''} in float32, and the weight norm "
                        f"divides by it")
    return None


def _normalised(weights, config):
    """(v, g, mask or None) names of each weight-normalised kernel in `weights` (srnn.model's
    add_weight_norm names them v{suffix} and g{suffix}; srnn.sparse names the masks)."""
    masks = sparse.mask_suffixes(config) if config.sparse_block else {}
    for name in weights:
        folder, _, last = name.rpartition("/")
        g_name = f"{folder}/g{last[1:]}"
        if last.startswith("v") and g_name in weights:
            yield name, g_name, masks.get(name)


def apply_optimizer(ckpt, optimizer):
    """Restore the optimizer's moments; False (and nothing changed) if the file has none or they
    do not fit."""
    if not ckpt.optimizer or len(ckpt.optimizer) != len(optimizer.variables):
        return False
    if any(tuple(v.shape) != tuple(a.shape) for v, (_, a) in zip(optimizer.variables, ckpt.optimizer)):
        return False
    for v, (_, a) in zip(optimizer.variables, ckpt.optimizer):
        v.assign(a)
    return True


def strip(src, dst, dtype=None):
    """Copy a checkpoint's weights and hyperparameters only (no optimizer state, no history):
    a third of the size, for sharing a model to sample from. `dst` is written atomically.
    `dtype` "float16": the weights in half the bytes again (a shipped model; every reader of
    checkpoints takes them, and the model computes in its own precision either way)."""
    ckpt = load(src)
    if dtype not in (None, "float16", "float32"):
        raise SrnnError(f"strip: dtype {dtype!r}: choose float16 or float32")
    masks = _masks(ckpt.config)
    with np.errstate(over="ignore"):  # (beyond float16's range: said below)
        weights = {name: value if dtype is None or name in masks else value.astype(dtype)
                   for name, value in ckpt.weights.items()}
    for name, value in weights.items():
        if not np.all(np.isfinite(value)):  # (load found the source finite)
            raise SrnnError(f"strip: weight {name} of {src} holds {float(np.max(np.abs(ckpt.weights[name]))):g}, "
                            f"beyond {dtype}'s range (largest {float(np.finfo(dtype).max):g}): keep float32 (leave "
                            f"dtype out)")
    problem = _values_problem(weights, ckpt.config)  # (a small weight may become 0 in float16)
    if problem:
        raise SrnnError(f"strip: {src} in {dtype}: {problem}: keep float32 (leave dtype out)")
    _write(dst, ckpt.config, list(weights.items()))
