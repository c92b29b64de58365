#!/usr/bin/env python3
"""Train a three-tier SampleRNN, or sample from one with --sample FILE.h5 (see --help)."""
import sys

from srnn.cli import train_main
from srnn.errors import run_cli

if __name__ == "__main__":
    sys.exit(run_cli(train_main))
