#!/usr/bin/env python3
"""Train a SampleRNN, or sample from one with --sample FILE.h5 (see --help)."""
from srnn.cli import train_entry

if __name__ == "__main__":
    train_entry()
