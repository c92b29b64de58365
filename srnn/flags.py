"""The command line's names for the library's options, in one table: the library's messages name
a Python parameter (srnn.checks.OptionError), train_srnn.py says its flag. An option's flag is its
name with dashes (`rnn_layers` is --rnn-layers), but for these."""

TRAIN_FLAGS = {"audition_seqs": "--nseqs", "audition_seconds": "--seconds"}  # an audition's clips
SAMPLE_FLAGS = {"n": "--nseqs", "precision": "--sample-precision", "layout": "--sample-layout", "argmax": "--debug"}


def flag(name, sample):
    """The command line's flag for the library's option `name` (of a generation with `sample`, of a
    training run without)."""
    return (SAMPLE_FLAGS if sample else TRAIN_FLAGS).get(name, "--" + name.replace("_", "-"))


def as_flags(error, sample):
    """An OptionError's message as the command line says it, each option called by its flag."""
    return error.named(lambda name: flag(name, sample))
