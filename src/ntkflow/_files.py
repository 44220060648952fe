"""Reading a user's text file (an experiment, a CSV data file) with one-line errors."""

from pathlib import Path
from typing import Literal


def path_kind(
    path: Path, *, what: str, error: type[ValueError] = ValueError
) -> Literal["file", "dir", "missing"]:
    """Whether `path` is a directory, missing, or a file (anything else that exists: a
    device, a pipe); `what` names it in the error.

    **Raises:** `error` (one line) when the OS cannot even look: a name too long, a
    symlink loop, a component that is not a directory.
    """
    try:
        is_dir, exists = path.is_dir(), path.exists()
    except OSError as e:
        raise error(
            f"{what} {str(path)[:80]!r} cannot be read ({e.strerror}); check the path"
        ) from None
    return "dir" if is_dir else "file" if exists else "missing"


def read_utf8(path: Path, *, what: str, kind: str, error: type[ValueError] = ValueError) -> str:
    """The text of `path`, decoded as UTF-8 (a byte-order mark, which some editors write,
    is dropped).

    `what` names the file in errors (`"experiment file"`), `kind` its format (`"TOML"`).

    **Raises:** `error` (one line, with the fix) when the file cannot be read, is UTF-16,
    or is not UTF-8.
    """
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise error(
            f"cannot read {what} {str(path)!r} ({e.strerror}); check its permissions"
        ) from None
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise error(
            f"{what} {str(path)!r} is UTF-16 text; {kind} files are UTF-8: save it as UTF-8 "
            "(e.g. `iconv -f UTF-16 -t UTF-8`)"
        )
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise error(
            f"{what} {str(path)!r} is not UTF-8 text (byte {e.start} is "
            f"{raw[e.start : e.start + 1]!r}); {kind} files are UTF-8"
        ) from None
