#!/usr/bin/env python3
"""Cut a folder of audio into 8-second 16 kHz parts: `python preprocess.py blizzard/tiny`."""
import sys

from srnn.cli import preprocess_main
from srnn.errors import run_cli

if __name__ == "__main__":
    sys.exit(run_cli(preprocess_main))
