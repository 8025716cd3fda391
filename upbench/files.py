"""Files: where a command may write one (checked before anything is measured, one clear error when it
cannot), and a short hash of what some hold (which code measured a row)."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterable

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


def prepare_parent(path: Path) -> None:
    """Create ``path``'s folder, or raise ValueError saying why ``path`` cannot be written there."""
    if path.is_dir():
        raise ValueError(f"cannot write {path}: it is a directory; give a file name, e.g. {path / 'sweep.csv'}")
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ValueError(f"cannot write {path}: {ancestor} is not a directory")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"cannot write {path}: cannot create {path.parent}: {error.strerror}") from None
    if not os.access(path.parent, os.W_OK):
        raise ValueError(f"cannot write {path}: {path.parent} is not writable")
