"""The checks of an option's value, each written once, for the library and the command line alike.

A check that fails raises OptionError, whose message names the options as its caller knows them:
the library's messages name the Python parameters (`n=0 must be ...`); the command line renders the
same message with its flags (`--nseqs=0 must be ...`) from its table (srnn.cli.FLAGS). No framework
here.
"""
import numbers
import string

import numpy as np

from .errors import SrnnError


class OptionError(SrnnError):
    """A bad value of the option `option`. `text` is a format string whose fields are option names
    (`{seconds}=-1 must be positive`): `named` puts each option's name in its place."""

    def __init__(self, option, text):
        self.option, self.text = option, text
        super().__init__(self.named(lambda name: name))

    def named(self, call):
        """The message with each option called `call(name)` (the command line: its flag)."""
        fields = {field for _, field, _, _ in string.Formatter().parse(self.text) if field}
        return self.text.format(**{field: call(field) for field in fields})


def shown(value):
    """A value as a message shows it: text quoted, so that n='2' does not read as the number 2 (and
    braces doubled: the message is a format string)."""
    text = repr(value) if isinstance(value, str) else str(value)
    return text.replace("{", "{{").replace("}", "}}")


def text(value):
    """The user's text (a path, a flag's word) inside a message: as it is, braces doubled."""
    return str(value).replace("{", "{{").replace("}", "}}")


def _real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def whole(option, value):
    """A whole number (an int, a NumPy integer; not a bool, not 2.0)."""
    if not isinstance(value, numbers.Integral) or isinstance(value, (bool, np.bool_)):
        raise OptionError(option, f"{{{option}}}={shown(value)} must be a whole number")
    return int(value)


def positive(option, value, is_whole=False):
    """A positive, finite number (whole with `is_whole`)."""
    if is_whole:
        whole(option, value)
    if not _real(value) or not 0 < value < float("inf"):  # NaN fails this too
        raise OptionError(option, f"{{{option}}}={shown(value)} must be positive and finite")
    return value


def count(option, value, what):
    """A whole number >= 0, where 0 means off (`what`: what a positive one is)."""
    if whole(option, value) < 0:
        raise OptionError(option, f"{{{option}}}={shown(value)} must be 0 (off) or {what}")
    return int(value)


def between(option, value, low, high):
    """A whole number in [low, high]."""
    if not low <= whole(option, value) <= high:
        raise OptionError(option, f"{{{option}}}={shown(value)} must lie between {low} and {high}")
    return int(value)


def fraction(option, value, what):
    """A number in [0, 1) (`what`: what it is)."""
    if not _real(value) or not 0 <= value < 1:
        raise OptionError(option, f"{{{option}}}={shown(value)} must lie in [0, 1): {what}")
    return float(value)


def choice(option, value, choices):
    """One of `choices` (what argparse checks on the command line)."""
    if value not in choices:
        raise OptionError(option, f"{{{option}}} {text(value)}: choose one of {', '.join(choices)}")
    return value


SEED_LIMIT = 2 ** 32  # seeds lie in [0, 2^32): what NumPy and keras.utils.set_random_seed take


def seed(option, value):
    """A seed the whole run can use (training seeds Keras and NumPy with it, sampling the engine's
    counter-based draws)."""
    if whole(option, value) < 0 or value >= SEED_LIMIT:
        raise OptionError(option, f"{{{option}}}={shown(value)} must lie between 0 and {SEED_LIMIT - 1}")
    return int(value)


def per_sequence(option, values, n_seqs, n_option="n"):
    """One value for all sequences, or one per sequence (`n_option`: their number's option)."""
    if len(values) not in (1, n_seqs):
        raise OptionError(option, f"{{{option}}} has {len(values)} values: give one, or one per sequence "
                                  f"({{{n_option}}} {n_seqs})")
    return values


def temperatures(option, values, n_seqs, n_option="n"):
    """Positive, finite temperatures: one, or one per sequence."""
    if any(not _real(t) or not 0 < t < float("inf") for t in values):
        raise OptionError(option, f"{{{option}}} must be positive, got {' '.join(map(shown, values))}")
    return per_sequence(option, values, n_seqs, n_option)
