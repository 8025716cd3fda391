"""Files: where a command may write one (checked before anything is measured, one clear error when it
cannot), and a short hash of what some hold (which code measured a row)."""
from __future__ import annotations

import errno
import hashlib
import os
import shutil
import tempfile
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
        created = path.resolve()  # a link to no file yet: open() creates its target, which is what to remove
        try:
            with open(path, "a"):
                pass
        except OSError as error:
            problem = error.strerror or str(error)
        else:
            if not existed:
                created.unlink(missing_ok=True)
    if problem:
        given = path if given is None else given
        if path.is_dir():  # a report's name beside the rows is not the user's to change but by --out
            problem += (f"; give a file name, e.g. {path / 'sweep.csv'}" if str(given) == str(path)
                        else f"; move it away or choose another {flag}")
        raise ValueError(f"{flag} {given}: cannot write {path}: {problem}")
    return path


def names_a_stream(path: str | Path) -> bool:
    """Whether ``path`` is a device or pipe, or a name for one (/dev/stdout, /proc/self/fd/1): written in place
    and appended to, as a shell's ``>>`` redirection expects of it, never truncated or replaced."""
    path = Path(path)
    return path.exists() and (not path.is_file() or str(path.absolute()).startswith(("/dev/", "/proc/")))


def _in_place(path: Path) -> bool:
    """Whether ``path`` must be written where it is rather than replaced: a device or pipe, or a name for one
    (/dev/stdout, /proc/self/fd/1: renaming onto its target would swap a file under the shell that redirected to
    it), or a file with other hard links, which a new file would leave behind."""
    return names_a_stream(path) or (path.is_file() and path.stat().st_nlink > 1)


# Why a rename onto a file can fail where writing it works: it is a mount point (a file bind-mounted into a
# container), on another device, or in a folder we may write files in but not rename into.
_RENAME_REFUSED = (errno.EBUSY, errno.EXDEV, errno.EPERM, errno.EACCES)


def _umask() -> int:
    current = os.umask(0o22)
    os.umask(current)
    return current


def write_whole(path: str | Path, write: Callable[[Path], object]) -> Path:
    """``write(temporary)`` beside ``path``, then the temporary renamed onto ``path``: a file is replaced whole or
    not at all, so a full disk or a kill mid-write leaves the earlier file (an earlier merge, a report) as it was.
    The temporary is the writer's own (two writers of one file never share one), keeps ``path``'s suffix, from
    which writers such as matplotlib take the format, and the replaced file's permissions. A link is written
    through; what cannot be replaced (:func:`_in_place`, a rename refused) is written in place, as before."""
    path = Path(path)
    try:
        if _in_place(path):
            write(path)
            return path
        path = path.resolve() if path.is_symlink() else path  # the temporary beside the file a link names
        handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
        os.close(handle)
        temporary = Path(name)
        try:
            write(temporary)
            if path.exists():
                shutil.copymode(path, temporary)
            else:  # mkstemp's file is private; a new file gets what open() would give it
                os.chmod(temporary, 0o666 & ~_umask())
            try:
                os.replace(temporary, path)
            except OSError as error:
                if error.errno not in _RENAME_REFUSED:
                    raise
                write(path)
        finally:
            temporary.unlink(missing_ok=True)
    except OSError as error:
        raise ValueError(f"cannot write {path}: {error.strerror or error}") from None
    return path
