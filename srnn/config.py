"""The model's hyperparameters: one small dataclass, stored in every checkpoint.

The architecture is a stack of frame tiers over a sample-level MLP. `frames` lists each frame
tier's frame size in samples, from the top tier down; each is a multiple of the next, so one step
of a tier covers a whole number of steps of the tier below. The top tier's frame is the "big
frame" (the product of the ratios between tiers and the bottom frame): every batch starts with
that many samples of silence, and --cutlen must be a multiple of it. The bottom frame is also the
sample MLP's context. `(8, 2)` with one GRU layer per tier is the original's three-tier model.
"""
import dataclasses
import json
import math

from . import checks
from .checks import OptionError
from .quantize import Q_LEVELS, QTYPES

FRAMES = (8, 2)  # the original: a slow tier over 8 samples, a mid tier over 2
EMB_SIZE = 256  # sample-tier embedding width per previous sample
SAMPLE_RATE = 16000
MAX_SAMPLE_RATE = (2 ** 32 - 1) // 2  # Hz: a WAV's byte rate (the rate x 2 bytes of 16-bit mono) is a 32-bit field
# per RNN: blocks of `units` in its projected input (gates), and in its state (h; h and c)
RNN_BLOCKS = {"gru": (3, 1), "lstm": (4, 2)}
RNNS = tuple(RNN_BLOCKS)
MAX_LAYERS = 64
MAX_Q_LEVELS = 65536  # levels are stored as int32 and embedded: beyond 16 bits is not audio


class ConfigError(ValueError):
    """A bad combination of hyperparameters; the message names the flag."""


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    slowdim: int = 1024  # the top tier's RNN width
    dim: int = 1024  # every other frame tier's RNN width and the sample MLP's width
    q_levels: int = Q_LEVELS
    qtype: str = "linear"
    sample_rate: int = SAMPLE_RATE
    emb_size: int = EMB_SIZE
    frames: tuple = FRAMES
    rnn: str = "gru"
    rnn_layers: int = 1
    skip: bool = False  # each tier's output layer reads all its RNN layers' outputs
    labels: tuple = ()  # the label vocabulary of a conditioned model (srnn.labels); () unconditional
    # block-sparse weights (srnn.sparse): the blocks' (rows, cols), () for a dense model (no masks),
    # and the pruned fraction of the pruned matrices that the masks hold
    sparse_block: tuple = ()
    sparsity: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "frames", tuple(int(f) for f in self.frames))
        if isinstance(self.labels, str) or not isinstance(self.labels, (tuple, list)):
            raise ConfigError(f"labels must be a list of names, not {self.labels!r}")
        object.__setattr__(self, "labels", tuple(str(label) for label in self.labels))
        if len(set(self.labels)) != len(self.labels):
            raise ConfigError(f"the labels {', '.join(self.labels)} are not distinct")
        # each value as the options name it (srnn.checks): a flag on the command line
        checks.choice("qtype", self.qtype, QTYPES)
        for name, option in (("slowdim", "slowdim"), ("dim", "dim"), ("sample_rate", "samplerate"),
                             ("emb_size", "emb_size")):
            checks.positive(option, getattr(self, name), is_whole=True)
        if self.sample_rate > MAX_SAMPLE_RATE:  # its audio could not be written
            raise OptionError("samplerate", f"{{samplerate}}={self.sample_rate} is more than a WAV holds "
                                            f"({MAX_SAMPLE_RATE} Hz)")
        checks.between("q_levels", self.q_levels, 2, MAX_Q_LEVELS)
        checks.choice("rnn", self.rnn, RNNS)
        checks.between("rnn_layers", self.rnn_layers, 1, MAX_LAYERS)
        check_frames(self.frames)
        object.__setattr__(self, "sparse_block", tuple(int(b) for b in self.sparse_block))
        self._check_sparsity()

    def _check_sparsity(self):
        from .sparse import block_problem

        if not self.sparse_block:
            if self.sparsity:
                raise ConfigError(f"sparsity {self.sparsity} without a block shape (sparse_block)")
            return
        block = "x".join(map(str, self.sparse_block))
        if len(self.sparse_block) != 2 or min(self.sparse_block) < 1:
            raise OptionError("prune_block", f"{{prune_block}} {block}: give ROWSxCOLS, e.g. 16x1")
        if not 0 <= self.sparsity < 1:  # NaN fails this too
            raise ConfigError(f"sparsity {self.sparsity} must lie in [0, 1)")
        problem = block_problem(self.pruned_shapes(), self.sparse_block)
        if problem:
            raise OptionError("prune_block", f"{{prune_block}} {block}: {problem}; choose a block whose rows divide "
                                             f"every output width and whose columns every input width")

    def pruned_shapes(self):
        """{v name: (inputs, outputs)} of the matrices a sparse model prunes (srnn.sparse)."""
        from .sparse import mask_suffixes

        shapes = self.weight_shapes(masks=False)
        return {name: shapes[name] for name in mask_suffixes(self)}

    @property
    def big_frame(self):
        """Samples per step of the top tier; also the silent prefix of every batch."""
        return self.frames[0]

    @property
    def frame(self):
        """Samples per step of the bottom frame tier; also the sample MLP's context."""
        return self.frames[-1]

    def ratios(self):
        """Per frame tier: how many vectors one of its steps emits for the tier below (4 and 2 for
        the original: a slow step conditions 4 mid steps, a mid step 2 samples)."""
        return [a // b for a, b in zip(self.frames, self.frames[1:] + (1,))]

    def widths(self):
        """Per frame tier: its RNN width (--slowdim on top, --dim below)."""
        return [self.slowdim] + [self.dim] * (len(self.frames) - 1)

    @property
    def n_labels(self):
        return len(self.labels)

    def weight_shapes(self, masks=True):
        """{checkpoint name: shape} of every weight, from the settings alone (no TensorFlow): what a
        checkpoint of this architecture must hold, and the parameter count. A test holds it equal
        to the built model's named_weights(). A sparse model's masks are weights too (`masks`)."""
        gates, states = RNN_BLOCKS[self.rnn]
        shapes = {}
        widths = self.widths()
        for k, (frame, ratio, units) in enumerate(zip(self.frames, self.ratios(), widths)):
            tier, out, g = f"frame{k}", (widths + [self.dim])[k + 1], gates * units
            if k:  # the top tier's RNN reads the scaled frame itself
                shapes.update({f"{tier}/in/v": (frame, units), f"{tier}/in/g": (units,), f"{tier}/in/b": (units,)})
            for layer in range(self.rnn_layers):
                rnn = f"{tier}/rnn{layer}"
                shapes.update({f"{rnn}/vx": (frame if k == 0 and layer == 0 else units, g), f"{rnn}/gx": (g,),
                               f"{rnn}/vh": (units, g), f"{rnn}/gh": (g,), f"{rnn}/bx": (g,), f"{rnn}/bh": (g,),
                               f"{rnn}/h0": (states * units,)})
            read = units * (self.rnn_layers if self.skip else 1)
            shapes.update({f"{tier}/out/v": (read, ratio * out), f"{tier}/out/g": (ratio * out,),
                           f"{tier}/out/b": (ratio * out,)})
            if self.labels:  # into the first RNN layer's gates
                shapes[f"{tier}/label/table"] = (self.n_labels, g)
        d, q = self.dim, self.q_levels
        shapes.update({"sample/embedding/embeddings": (q, self.emb_size),
                       "sample/in/v": (self.frame * self.emb_size, d), "sample/in/g": (d,)})
        for layer, width in (("h1", d), ("h2", d), ("out", q)):
            shapes.update({f"sample/{layer}/v": (d, width), f"sample/{layer}/g": (width,),
                           f"sample/{layer}/b": (width,)})
        if self.labels:
            shapes["sample/label/table"] = (self.n_labels, d)
        if masks and self.sparse_block:
            from .sparse import mask_suffixes

            shapes.update({mask: shapes[v] for v, mask in mask_suffixes(self).items()})
        return shapes

    def count_params(self):
        """The model's parameter count, from the settings alone (no TensorFlow, no allocation):
        for the memory check before a model is built. A test holds it equal to Keras' count."""
        return sum(math.prod(shape) for shape in self.weight_shapes(masks=False).values())

    def state_sizes(self):
        """The width of each RNN layer's carried state, top tier first (SampleRNN.state_sizes)."""
        states = RNN_BLOCKS[self.rnn][1]
        return [states * units for units in self.widths() for _ in range(self.rnn_layers)]

    def describe(self):
        """The architecture in the flags' words, for summaries and error messages."""
        return (f"frames={','.join(map(str, self.frames))}, rnn={self.rnn} x{self.rnn_layers}"
                f"{' with skip' if self.skip else ''}, slowdim={self.slowdim}, dim={self.dim}, "
                f"emb_size={self.emb_size}, q_levels={self.q_levels}"
                + (f", labels {','.join(self.labels)}" if self.labels else "")
                + (f", pruned in {'x'.join(map(str, self.sparse_block))} blocks" if self.sparse_block else "")
                + (f" to sparsity {self.sparsity:.4f}" if self.sparsity else ""))

    def to_json(self):
        data = dataclasses.asdict(self)
        if not self.sparse_block:  # a dense model's description is what it was before sparsity
            del data["sparse_block"], data["sparsity"]
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text):
        """The settings a checkpoint stores. The file may come from anyone: each field must have
        its JSON type (dim 32.5, "32" or q_levels 256.0 are refused, not rounded) before the
        ranges are checked, so a bad file is a ConfigError, never a crash further on."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ConfigError("the model description is not a JSON object")
        if "frames" not in data and "big_frame" in data:  # written before frames were a setting
            data["frames"] = (data["big_frame"], data.get("frame", FRAMES[-1]))
        known = {f.name: f.default for f in dataclasses.fields(cls)}
        data = {k: v for k, v in data.items() if k in known}
        for name, value in data.items():
            kind = type(known[name])
            items = {"frames": int, "labels": str, "sparse_block": int}.get(name)
            if items is not None:
                ok = isinstance(value, (list, tuple)) and all(_is(v, items) for v in value)
            else:
                ok = _is(value, kind)
            if not ok:
                what = f"a list of {items.__name__}" if items else kind.__name__
                raise ConfigError(f"{name} is {_short(value)}, not {what}")
        if len(data.get("frames", ())) > MAX_TIERS:
            raise ConfigError(f"frames lists {len(data['frames'])} tiers, more than {MAX_TIERS}")
        return cls(**data)


MAX_TIERS = 16  # frame tiers: each at least halves the frame above, so 16 is a 65536-sample frame


def _is(value, kind):
    """JSON's type check: a bool is no int, an int no float."""
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, float)
    return isinstance(value, kind)


def _short(value):
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_frames(frames):
    """Frame sizes from the top tier down: positive, each a multiple of the next."""
    text = ",".join(map(str, frames))
    if not frames:
        raise OptionError("frames", "{frames} needs at least one frame size, e.g. {frames} 8,2")
    if any(f <= 0 for f in frames):
        raise OptionError("frames", f"{{frames}} {text}: frame sizes must be positive")
    for a, b in zip(frames, frames[1:]):
        if a <= b:
            raise OptionError("frames", f"{{frames}} {text}: frame sizes must shrink from the top tier down "
                                        f"({a} is not larger than {b})")
        if a % b:
            raise OptionError("frames", f"{{frames}} {text}: each frame size (top tier first) must be a multiple "
                                        f"of the next, and {a} is not a multiple of {b}")
