"""Filesystem helpers: atomic writes and paths that cannot escape their folder.

Every path built from user input (an archive entry, an agent id) goes through ``safe_join``;
every file the app writes goes through ``atomic_write`` so that a crash leaves either the old
file or the new one, never half of one.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path, PurePosixPath

from core.errors import UnsafePathError

_SAFE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def is_safe_id(value: str) -> bool:
    return bool(_SAFE_ID.match(value))


def check_id(value: str, what: str = "id") -> str:
    """Ids become folder names: allow only letters, digits, ``-`` and ``_``."""
    if not _SAFE_ID.match(value):
        raise UnsafePathError(f"invalid {what}: {value!r}")
    return value


def safe_join(root: Path, relative: str) -> Path:
    """``root / relative``, refusing absolute paths, ``..`` and anything resolving outside."""
    if not relative or "\\" in relative or "\x00" in relative:
        raise UnsafePathError(f"unsafe path: {relative!r}")
    pure = PurePosixPath(relative)
    if pure.is_absolute() or ".." in pure.parts or re.match(r"^[A-Za-z]:", relative):
        raise UnsafePathError(f"unsafe path: {relative!r}")
    target = (root / pure).resolve()
    if not target.is_relative_to(root.resolve()):
        raise UnsafePathError(f"unsafe path: {relative!r}")
    return target


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def replace_dir(staging: Path, target: Path) -> None:
    """Swap ``staging`` in as ``target``; the old folder is removed only after the swap."""
    old: Path | None = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
    os.replace(staging, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
