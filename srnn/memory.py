"""Memory a run will need, estimated from the settings before anything is allocated, so that an
absurd size is one line ("needs about 600 GB ... this machine has 24 GB") instead of an
allocation failure deep in TensorFlow. Only sizes beyond the machine's whole memory are refused,
so a rough estimate does (measured: dim 1024, batch 16, cutlen 512 trains in 1.6 GB of RSS, about
0.9 GB of it TensorFlow itself; estimated here 0.9 GB for the model)."""
import os

from .config import RNN_BLOCKS
from .errors import SrnnError

FLOAT = 4  # bytes
PIECE = 1 << 18  # samples per compiled generation call (16 s at 16 kHz): a longer generation goes
# on in pieces (srnn.generation.level_chunks), so its memory does not grow with its length
MIN_ROOM = 1 << 15  # samples: the smallest output buffer of a compiled call (2 s at 16 kHz)
WAV_LIMIT = (1 << 32) - (1 << 16)  # bytes: a WAV file's sizes are 32-bit
# per parameter while training: the weights (v and g), the effective kernels, the gradient and
# its clipped copy, Adam's two moments
TRAIN_COPIES = 6


def machine_bytes():
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def training_bytes(cfg, batch, cutlen):
    """Weights and optimizer state, plus one chunk's activations kept for the backward pass: the
    sample MLP's per position (logits and their gradient, the hidden layers), each RNN layer's per
    step (its gates and states, for the hand-written gradient)."""
    gates, states = RNN_BLOCKS[cfg.rnn]
    per_position = 3 * cfg.q_levels + 8 * cfg.dim
    frames = sum(cutlen // f * (gates + states + 2) * u * cfg.rnn_layers * 2
                 for f, u in zip(cfg.frames, cfg.widths()))
    masks = sum(a * b for a, b in cfg.pruned_shapes().values()) if cfg.sparse_block else 0  # float32, not trained
    return FLOAT * (TRAIN_COPIES * cfg.count_params() + masks + batch * (cutlen * per_position + frames))


def piece_frames(n_samples, big_frame, piece=None):
    """How a generation of `n_samples` goes, in big frames: (frames per call, frames of room in the
    compiled call). The number of frames a call runs is a tensor, and its output buffer has a room
    of a power of two frames, at least MIN_ROOM samples: one compiled loop serves every length up
    to that room (`--seconds 18` is a 16 s and a 2 s piece from one compilation, short clips of
    any length share one), and at most a few rooms are ever compiled per model."""
    per_call = max(1, -(-(piece or PIECE) // big_frame))  # whole big frames, at least `piece` samples
    needed = min(per_call, max(1, -(-n_samples // big_frame)))
    room = max(needed, -(-min(MIN_ROOM, piece or PIECE) // big_frame))
    return per_call, 1 << (room - 1).bit_length()


def generation_bytes(cfg, n_seqs, n_samples):
    """The weights (and their fused copies), and one piece of output: levels and
    log-probabilities, in the loop's buffer and again as arrays."""
    room = piece_frames(n_samples, cfg.big_frame)[1] * cfg.big_frame
    return FLOAT * (3 * cfg.count_params() + 4 * n_seqs * room)


def audition_bytes(cfg, n_seqs, n_samples):
    """An audition holds its clips whole (levels, log-probabilities, the audio twice) besides what
    generation itself needs."""
    return generation_bytes(cfg, n_seqs, n_samples) + FLOAT * 4 * n_seqs * n_samples


def check(need, what, hint, option=None):
    """A one-line error when `need` bytes are more than the machine has: `what` needs ...: `hint`.
    With `option`, an OptionError whose `hint` names options as `{seconds}` (srnn.checks)."""
    have = machine_bytes()
    if have and need > have:
        text = f"{what} needs about {need / 2**30:,.1f} GB of memory, this machine has {have / 2**30:,.0f} GB: "
        if option is None:
            raise SrnnError(text + hint)
        from .checks import OptionError

        raise OptionError(option, text.replace("{", "{{").replace("}", "}}") + hint)
