#!/usr/bin/env bash
# The wheels bench/gpu.py needs on a GPU machine that has Python 3.12, JAX, PyTorch, NumPy, SciPy,
# h5py, matplotlib, psutil, rich, absl-py, ml-dtypes and packaging, but no network: Keras and the
# needs of Keras and srnn that such a machine lacks, into ./.whl (git-ignored through
# .git/info/exclude). Run here, in the repo root; bench/gpu.py's docstring has the command there.
#   keras: the version srnn is developed against (.venv); namex and optree: Keras' own needs;
#   soundfile, cffi, pycparser: srnn.train imports srnn.audio (through srnn.watch and srnn.batches).
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=(keras==3.15.1 namex==0.1.0 optree==0.20.0 soundfile==0.14.0 cffi==2.1.1 pycparser==3.12)
PLATFORMS=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
  PLATFORMS+=(--platform "$p")
done
grep -qxF /.whl/ .git/info/exclude 2>/dev/null || echo /.whl/ >>.git/info/exclude
rm -rf .whl  # one version of each: two would stop the install there
mkdir .whl
for w in "${WHEELS[@]}"; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${PLATFORMS[@]}" -d .whl "$w"
done
ls -l .whl
echo "total: $(du -cb .whl/*.whl | tail -1 | cut -f1 | awk '{printf "%.1f MB", $1 / 1e6}') in $(ls .whl/*.whl | wc -l) wheels (limit 64 MB)"
