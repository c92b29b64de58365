#!/usr/bin/env python3
"""Cut a folder of audio into 8-second 16 kHz parts: `python preprocess.py blizzard/tiny`."""
from srnn.cli import preprocess_entry

if __name__ == "__main__":
    preprocess_entry()
