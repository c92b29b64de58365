"""User-facing errors: one line naming the file or flag and what to do, never a traceback."""
import re
import sys


class SrnnError(ValueError):
    """A problem the user can fix; its message is printed as one line and the tool exits non-zero
    (from Python, srnn's API raises it: a ValueError, as a bad argument is)."""

    exit_code = 2
    label = "error"  # the word before the message on stderr


def first_line(exc):
    """An exception's message on one line (its first non-empty line), or its type's name; without
    the `{{function_node ...}}` that TensorFlow puts before an op's own words."""
    lines = re.sub(r"^\{\{.*?\}\}\s*", "", str(exc).strip()).splitlines()
    return lines[0] if lines else type(exc).__name__


def one_line(text):
    """`text` with its unprintable characters escaped (a newline as \\n): a message that names a
    file or a label from the user's disk stays one line, whatever the name holds."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def run_cli(main, argv=None):
    """Run `main(argv)` as a command: clean one-line errors and exit codes instead of tracebacks."""
    try:
        code = main(argv)
    except SrnnError as e:
        print(f"{e.label}: {one_line(str(e))}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0 if code is None else code
