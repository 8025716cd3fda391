"""Where a command may write a file: checked before anything is measured, one clear error when it cannot."""
from __future__ import annotations

import os
from pathlib import Path


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
