"""The documentation cannot rot silently: README.md's and docs/*.md's relative links and #anchors
resolve, every --flag they name exists, every Python block marked runnable runs, the version agrees
in the package, CITATION.cff and CHANGELOG.md, requirements.txt holds pyproject.toml's
dependencies, and the repository's text speaks of the software only. No training here; the
runnable blocks generate a fraction of a second of audio."""
import glob
import os
import re
import subprocess

import pytest

from conftest import ROOT

PAGES = ["README.md"] + sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "*.md")))

# Files the docs show that a test makes rather than the repository keeping them from the start: a
# link to one resolves once the file is there, or while it is listed here with the command that makes it.
MADE_BY_TESTS = {}

FENCE = re.compile(r"^\s*(```|~~~)")
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z0-9]*(?:-[a-z0-9]+)*)")
# who a --flag on a line belongs to: the last program named before it (none: srnn's commands)
SRNN = r"train_srnn\.py|preprocess\.py|srnn-train|srnn-preprocess"
BENCH = r"bench/(\w+)\.py"
OTHERS = r"\b(?:pip|pytest|tensorboard|aplay|ffplay|sox|curl|openssl|ffmpeg|apt-get|git)\b"
PROGRAM = re.compile(f"(?P<srnn>{SRNN})|(?P<bench>{BENCH})|(?P<other>{OTHERS})")


def read(page):
    with open(os.path.join(ROOT, page), encoding="utf-8") as f:
        return f.read()


def prose_and_code(text):
    """The page's lines as (line number, text, in a fenced block), fences themselves left out."""
    fenced = False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        yield number, line, fenced


def slug(heading):
    """GitHub's anchor for a heading: lowercase, punctuation dropped (not - or _), spaces to -."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())  # a link's text
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page):
    seen, found = {}, set()
    for _, line, fenced in prose_and_code(read(page)):
        m = None if fenced else re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            base = slug(m.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def without_code_spans(line):
    return re.sub(r"`[^`]*`", "", line)


@pytest.mark.parametrize("page", PAGES)
def test_relative_links_and_anchors_resolve(page):
    broken = []
    for number, line, fenced in prose_and_code(read(page)):
        if fenced:
            continue
        for target in LINK.findall(without_code_spans(line)):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            file = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
            if not os.path.exists(os.path.join(ROOT, file)) and file not in MADE_BY_TESTS:
                broken.append(f"{page}:{number}: {target} (no {file})")
            elif anchor and file.endswith(".md") and anchor not in anchors(file):
                broken.append(f"{page}:{number}: {target} (no heading #{anchor} in {file})")
    assert not broken, "broken links:\n" + "\n".join(broken)


def srnn_flags():
    from srnn.cli import preprocess_parser, train_parser

    return {option for parser in (train_parser(), preprocess_parser()) for action in parser._actions
            for option in action.option_strings if option.startswith("--")}


def bench_flags(name):
    path = os.path.join(ROOT, "bench", f"{name}.py")
    return set(re.findall(r"[\"'](--[a-z][a-z0-9-]*)[\"']", read(path))) if os.path.exists(path) else set()


def units(text):
    """What a flag's program is looked for in: each line of a fenced block (a command, its `\\`
    continuations joined), each table row, and each paragraph or list item of prose (a command in
    backquotes may wrap)."""
    unit, start, fenced_unit = [], 0, False
    for number, line, fenced in prose_and_code(text):
        new = fenced or fenced != fenced_unit or line.startswith("|") or not line.strip() \
            or re.match(r"^\s*([-*]|\d+\.)\s", line) or line.startswith("#")
        if new and unit and not (fenced and fenced_unit and unit[-1].rstrip().endswith("\\")):
            yield start, " ".join(unit)
            unit = []
        if line.strip():
            if not unit:
                start, fenced_unit = number, fenced
            unit.append(line)
    if unit:
        yield start, " ".join(unit)


@pytest.mark.parametrize("page", PAGES)
def test_every_flag_named_exists(page):
    """A --flag after train_srnn.py or preprocess.py (or with no program named) is one of theirs; after
    a bench script, one of the script's or theirs; after another program (pip, pytest, aplay, ...),
    that program's business."""
    ours, unknown = srnn_flags(), []
    for number, text in units(read(page)):
        mentions = list(PROGRAM.finditer(text))
        for flag in FLAG.finditer(text):
            before = [m for m in mentions if m.start() < flag.start()]
            owner = before[-1] if before else None
            if owner is not None and owner.group("other"):
                continue
            known = ours | (bench_flags(owner.group(3)) if owner is not None and owner.group("bench") else set())
            if flag.group(1) not in known:
                unknown.append(f"{page}:{number}: {flag.group(1)}"
                               + (f" (after {owner.group(0)})" if owner is not None else ""))
    assert not unknown, "flags no command has:\n" + "\n".join(unknown)


def runnable_blocks():
    blocks = []
    for page in PAGES:
        lines = read(page).splitlines()
        for i, line in enumerate(lines[:-1]):
            if line.strip() == "<!-- runnable -->":
                assert lines[i + 1].strip() == "```python", f"{page}:{i + 1}: a runnable mark not before ```python"
                end = next(j for j in range(i + 2, len(lines)) if lines[j].strip() == "```")
                blocks.append(pytest.param(page, i + 3, "\n".join(lines[i + 2:end]), id=f"{page}:{i + 3}"))
    return blocks


def test_pages_have_runnable_blocks():
    # README.md's "From Python" block is run as written by tests/test_api.py (test_readme_from_python_example_runs)
    assert {block.values[0] for block in runnable_blocks()} >= {"docs/python.md", "docs/live.md"}


@pytest.mark.slow  # loads the framework and compiles a generation
@pytest.mark.parametrize("page, line, code", runnable_blocks())
def test_runnable_block_runs(page, line, code, tmp_path, monkeypatch):
    """As a reader runs it: from a folder of its own that has the repository's models."""
    os.symlink(os.path.join(ROOT, "models"), tmp_path / "models")
    monkeypatch.chdir(tmp_path)
    exec(compile("\n" * (line - 1) + code, os.path.join(ROOT, page), "exec"), {"__name__": "__docs__"})


def test_version_agrees():
    import srnn

    citation = re.search(r"^version:\s*\"?([^\"\s]+)", read("CITATION.cff"), re.M).group(1)
    latest = re.search(r"^## \[(\d[^\]]*)\]", read("CHANGELOG.md"), re.M).group(1)
    assert srnn.__version__ == citation == latest, (srnn.__version__, citation, latest)


def test_requirements_hold_pyproject_dependencies():
    """requirements.txt, the developer's full set that the README's commands install, holds every
    dependency and extra of pyproject.toml with the same bounds, and nothing else."""
    import tomllib

    project = tomllib.loads(read("pyproject.toml"))["project"]
    declared = set(project["dependencies"]) | {r for extra in project["optional-dependencies"].values() for r in extra}
    listed = {line.split("#")[0].strip() for line in read("requirements.txt").splitlines()} - {""}
    assert listed == declared, (sorted(listed - declared), sorted(declared - listed))
    assert not any(r.startswith(("pytest", "playwright", "psutil", "jax")) for r in project["dependencies"])


# Words about how the work on srnn is organised, not about srnn; pytest's session scope is a name.
ORGANISATION = re.compile(r"\bissues? \d|\bissue's\b|\bsessions?\b|\bhelper\b|\blent\b|\bthis release\b",
                          re.IGNORECASE)
PYTEST_NAMES = re.compile(r"""scope=["']session["']""")


def tracked_text_files():
    try:
        listed = subprocess.run(["git", "-C", ROOT, "ls-files", "-z"], capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: no list of tracked files")
    for name in filter(None, listed.decode().split("\0")):
        path = os.path.join(ROOT, name)
        if name == "tests/test_docs.py" or not os.path.isfile(path):  # this file names the words
            continue
        with open(path, "rb") as f:
            data = f.read()
        if b"\0" not in data[:8192]:
            yield name, data.decode("utf-8", errors="replace")


def test_only_the_software_speaks():
    hits = [f"{name}:{number}: {line.strip()[:100]}" for name, text in tracked_text_files()
            for number, line in enumerate(text.splitlines(), 1)
            if ORGANISATION.search(PYTEST_NAMES.sub("", line))]
    assert not hits, "words about how the work is organised, not about srnn:\n" + "\n".join(hits)
