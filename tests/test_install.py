"""`pip install .` gives the two commands, with the same flags as the scripts."""
import os
import shutil
import site
import subprocess
import sys

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow  # each test runs the scripts or TensorFlow in new processes


def test_pip_install_puts_both_commands_on_path(tmp_path):
    src = tmp_path / "src"  # a copy, so that building leaves nothing in the repository
    shutil.copytree(os.path.join(ROOT, "srnn"), src / "srnn", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "requirements.txt"):
        shutil.copy(os.path.join(ROOT, name), src / name)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    # the dependencies are this environment's (installing TensorFlow again would take minutes):
    # the new venv sees them through a .pth file, and pip installs srnn itself only
    new_site = subprocess.run([py, "-c", "import site; print(site.getsitepackages()[0])"], capture_output=True,
                              text=True, check=True).stdout.strip()
    with open(os.path.join(new_site, "parent.pth"), "w") as f:
        f.write("\n".join(site.getsitepackages()) + "\n")
    proc = subprocess.run([py, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", str(src)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    shown = subprocess.run([py, "-m", "pip", "show", "srnn"], capture_output=True, text=True).stdout
    requires = next(line for line in shown.splitlines() if line.startswith("Requires:"))
    assert "tensorflow" in requires and "h5py" in requires and "pytest" not in requires  # tests are an extra
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    for command, words in (("srnn-train", ["--sample FILE.h5", "--frames", "--tensorboard"]),
                           ("srnn-preprocess", ["--seconds", "--samplerate"])):
        assert shutil.which(command, path=env["PATH"]) == str(venv / "bin" / command)
        out = subprocess.run([command, "--help"], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)
        assert out.returncode == 0, out.stderr
        for w in words:
            assert w in out.stdout, (command, w)
    # the installed command is the scripts' front end: the same one-line errors
    out = subprocess.run(["srnn-train", "--frames", "8,3"], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert out.returncode == 2 and out.stderr.startswith("error: --frames 8,3")
