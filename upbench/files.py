"""Files: where a command may write one (checked before anything is measured, one clear error when it
cannot), and a short hash of what some hold (which code measured a row)."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable, Iterable

DIGEST_CHARS = 12
NO_FILES = "unknown"  # nothing to hash: no file could be read


def digest_files(files: Iterable[Path]) -> str:
    """A short hash of the names and contents of ``files`` (those that can be read), in the order given."""
    digest = hashlib.sha256()
    found = False
    for path in files:
        try:
            content = path.read_bytes()
        except OSError:
            continue
        found = True
        digest.update(path.name.encode() + b"\0" + content + b"\0")
    return digest.hexdigest()[:DIGEST_CHARS] if found else NO_FILES


def _parent_problem(path: Path) -> str | None:
    """Create ``path``'s folder; None, or why ``path`` cannot be written there."""
    if path.is_dir():
        return "it is a directory"
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return f"{ancestor} is not a directory"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        return f"cannot create {path.parent}: {error.strerror}"
    if not os.access(path.parent, os.W_OK):
        return f"{path.parent} is not writable"
    return None


def prepare_parent(path: Path) -> None:
    """Create ``path``'s folder, or raise ValueError saying why ``path`` cannot be written there."""
    problem = _parent_problem(path)
    if problem:
        hint = f"; give a file name, e.g. {path / 'sweep.csv'}" if path.is_dir() else ""
        raise ValueError(f"cannot write {path}: {problem}{hint}")


def check_writable(path: str | Path, flag: str = "--out", given: str | Path | None = None) -> Path:
    """Create ``path``'s folder and make sure the file itself can be opened for writing, or raise ValueError
    naming ``flag`` and the path as ``given`` (default ``path``): before anything is measured, so a long run
    does not die on its output at the end. The permission bits do not tell it all (root ignores them, a
    read-only mount or /proc refuses new files), so the file is opened; one that was not there is removed."""
    path = Path(path)
    problem = _parent_problem(path)
    if problem is None:
        existed = path.exists()
        try:
            with open(path, "a"):
                pass
        except OSError as error:
            problem = error.strerror or str(error)
        else:
            if not existed:
                path.unlink(missing_ok=True)
    if problem:
        given = path if given is None else given
        if path.is_dir():  # a report's name beside the rows is not the user's to change but by --out
            problem += (f"; give a file name, e.g. {path / 'sweep.csv'}" if str(given) == str(path)
                        else f"; move it away or choose another {flag}")
        raise ValueError(f"{flag} {given}: cannot write {path}: {problem}")
    return path


def write_whole(path: str | Path, write: Callable[[Path], object]) -> Path:
    """``write(temporary)`` beside ``path``, then the temporary renamed onto ``path``: a file is replaced whole or
    not at all, so a full disk or a kill mid-write leaves the earlier file (an earlier merge, a report) as it was.
    The temporary keeps ``path``'s suffix, from which writers such as matplotlib take the format."""
    path = Path(path).resolve() if Path(path).is_symlink() else Path(path)  # through a link, as open() writes
    # a device or pipe (/dev/stdout, /dev/full) is written in place: renaming onto it would replace the node
    temporary = path if path.exists() and not path.is_file() else path.with_name(f".{path.stem}.writing{path.suffix}")
    try:
        write(temporary)
        if temporary != path:
            os.replace(temporary, path)
    except BaseException as error:
        if temporary != path:
            temporary.unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise ValueError(f"cannot write {path}: {error.strerror or error}") from None
        raise
    return path
