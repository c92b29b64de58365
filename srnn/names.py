"""File-name patterns, in one place: parts folders, part files, prompts, checkpoints, outputs."""
import os
import re

PROMPTS = "prompts.txt"
NO_LABEL = "none"  # prompts.txt's second column for a part without a label (the original wrote it)
PART_RE = re.compile(r"^p(\d+)\.wav$")
COSTS = "costs.png"
LABELS_FILE = "labels.txt"  # beside an --export: the columns of generate()'s `mix`, one label a line


def part_name(i):
    return f"p{i}.wav"


def prompt_line(i, label=NO_LABEL):
    """One line of prompts.txt: `p{i}.wav<TAB>label`; the original wrote `none` there (it had no
    transcripts), `preprocess.py --labels folder` the part's label."""
    return f"{part_name(i)}\t{label}\n"


def parts_dir_for(src_dir):
    """`blizzard/tiny` -> `blizzard/tiny_parts` (the original's convention)."""
    return os.path.normpath(src_dir).rstrip(os.sep) + "_parts"


def parts_lock(out_dir):
    """The lock of one parts folder, a hidden file beside it (the folder may not exist yet)."""
    out_dir = os.path.normpath(out_dir)
    return os.path.join(os.path.dirname(out_dir), f".{os.path.basename(out_dir)}.lock")


def train_lock(out_dir, exp, dim):
    """The lock of one experiment's checkpoint names, a hidden file beside them."""
    return os.path.join(out_dir, os.path.dirname(exp), f".{os.path.basename(exp)}_srnn_sz{dim}.lock")


PARTS_ROOT = "blizzard"  # the original read blizzard/{exp}_parts from the working folder


def exp_parts_dir(exp, root=PARTS_ROOT):
    return os.path.join(root, f"{exp}_parts")


def checkpoint_name(exp, dim, epoch):
    """`{exp}_srnn_sz{dim}_e{epoch}.h5`, epoch counted from 0 as the original did; `epoch` may
    also be `best` (lowest validation loss so far) or `interrupted` (stopped by a signal)."""
    return f"{exp}_srnn_sz{dim}_{epoch if isinstance(epoch, str) else f'e{epoch}'}.h5"


def export_staging(path):
    """The hidden folder --export writes into before renaming it to `path` (beside it, named after
    it: a killed export leaves it, and the next export to `path` removes it)."""
    return os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.srnn-export-")


def samples_dir(exp):
    """Where --audition writes its clips: `{exp}_samples/`."""
    return f"{exp}_samples"


def audition_name(epoch, i):
    return f"e{epoch}_{i}.wav"


def generated_name(i, n, ext=".wav", label=None):
    """`generated.wav` for one sequence, `generated_0.wav ...` for several; with a label (a
    conditioned model sampled without --label: each label in turn) `generated_{label}.wav`, or
    `generated_{label}_{i}.wav` for several of one label."""
    stem = "generated" if label is None else f"generated_{label}"
    name = f"{stem}{ext}" if n == 1 else f"{stem}_{i}{ext}"
    # the label came from a file (a checkpoint, possibly crafted), checked when it was read; checked
    # again here, where it becomes a path: a name never leaves the output folder
    if os.path.basename(name) != name or (os.altsep and os.altsep in name) or "\0" in name or not name.isprintable():
        from .errors import SrnnError

        raise SrnnError(f"the label {label!r} cannot be part of a file name: use another checkpoint")
    return name
