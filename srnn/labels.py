"""Labels of a conditioned model: what a name may be, the vocabulary of a corpus, and the
`--label` syntax (one name, or a mixture `speech:0.7,music:0.3`) as weights over the vocabulary.

A label names what a part of the corpus is (a speaker, an instrument, a style): preprocess
takes it from the part's subfolder (`--labels folder`) and writes it in the second column of
prompts.txt. The vocabulary is the sorted set of a corpus's labels, stored in the checkpoint
(ModelConfig.labels); a model sees a label as a row of weights over it, one-hot in training, any
convex mixture at generation.
"""
import numpy as np

from .checks import OptionError
from .errors import SrnnError
from .names import NO_LABEL

MODES = ("folder",)  # preprocess --labels: where each part's label comes from (each subfolder is one)
FORBIDDEN = ":,\t\n\r/\\"  # the mixture syntax, prompts.txt's columns, and file names (generated_{label}.wav)
MAX_LABEL_BYTES = 200  # generated_{label}_{i}.png must fit a file name (255 bytes)
# A conditioned model without --label generates every label in turn, and its one-hot rows are
# (labels x labels): beyond a few thousand, a vocabulary is a mistake (or a crafted file).
MAX_LABELS = 4096


def label_problem(name):
    """What is wrong with `name` as a label, in words, or None. The one rule for a label, wherever
    it comes from (a folder, prompts.txt, a checkpoint): it must survive prompts.txt, the --label
    syntax and a file name, and be shown on one line."""
    if not isinstance(name, str):
        return f"{name!r} is not text"
    bad = sorted(set(name) & set(FORBIDDEN)) + sorted({c for c in name if not c.isprintable()} - set(FORBIDDEN))
    if bad:
        return f"{name!r} has {' '.join(repr(c) for c in bad)}"
    if not name.strip() or name != name.strip():
        return f"{name!r} has leading/trailing spaces or nothing"
    if name in (".", ".."):  # a folder's own name, never a label's
        return f"{name!r} names a folder"
    if len(name.encode("utf-8", "surrogateescape")) > MAX_LABEL_BYTES:
        return f"{name[:20]!r}... is longer than {MAX_LABEL_BYTES} bytes"
    if name == NO_LABEL:
        return f"{NO_LABEL!r} means 'no label' in prompts.txt"
    return None


def check_name(name, where):
    """A label must pass label_problem; `where` says whence it came (a folder, a line of
    prompts.txt)."""
    problem = label_problem(name)
    if problem:
        raise SrnnError(f"{where}: the label {problem}: it cannot be used; rename it")
    return name


def vocabulary(labels, where):
    """The sorted distinct labels of a corpus (one per part); () when every part says `none`
    (an unlabelled corpus, as the original's). A mix of labelled and unlabelled parts is refused:
    a part without a label would teach the model nothing about its label."""
    named = {label for label in labels if label != NO_LABEL}
    if not named:
        return ()
    if NO_LABEL in labels:
        raise SrnnError(f"{where} labels some parts and not others ({labels.count(NO_LABEL)} say {NO_LABEL!r}): "
                        f"label every part (preprocess.py --labels folder) or train with --no-cond")
    for name in named:
        check_name(name, where)
    if len(named) > MAX_LABELS:
        raise SrnnError(f"{where} has {len(named)} labels, more than {MAX_LABELS}: merge some")
    return tuple(sorted(named))


def one_hot(ids, n):
    """(len(ids), n) float32 rows, one 1 each: the training form of a label."""
    rows = np.zeros((len(ids), n), np.float32)
    rows[np.arange(len(ids)), ids] = 1.0
    return rows


def parse_mix(text, vocab):
    """`speech` or `speech:0.7,music:0.3` -> weights over `vocab` (n_labels,), summing to 1 (a
    mixture is a weighted mean of the label embeddings; a name alone is weight 1)."""
    items = []
    for item in text.split(","):
        name, sep, w = item.strip().rpartition(":") if ":" in item else (item.strip(), "", "1")
        if name not in vocab:
            raise OptionError("label", _text(f"{{label}} {text}: unknown label {name!r}; the model knows "
                                             f"{', '.join(vocab)}", keep="{label}"))
        try:
            value = float(w)
        except ValueError:
            value = float("nan")
        if not 0 < value < float("inf"):
            raise OptionError("label", _text(f"{{label}} {text}: the weight of {name} must be a positive number, "
                                             f"got {w!r}", keep="{label}"))
        items.append((vocab.index(name), value))
    # summed per label relative to the largest weight: 1e308 twice (one label or two) would
    # overflow to inf, the ratios never do (each term <= 1, at most len(text) of them)
    top = max(value for _, value in items)
    weights = np.zeros(len(vocab), np.float64)
    for i, value in items:
        weights[i] += value / top
    return (weights / weights.sum()).astype(np.float32)


def _text(message, keep):
    """A message of the user's text as an OptionError's format string: every brace doubled but the
    option's own field `keep`."""
    return message.replace("{", "{{").replace("}", "}}").replace("{" + keep + "}", keep)


def describe_mix(weights, vocab):
    """The inverse of parse_mix, for titles and logs: `speech` or `speech:0.7,music:0.3`."""
    used = [(name, w) for name, w in zip(vocab, weights) if w > 0]
    if len(used) == 1:
        return used[0][0]
    return ",".join(f"{name}:{w:.2g}" for name, w in used)
