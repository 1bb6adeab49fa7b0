"""The one way trbench writes a file: all or nothing, and durable once it returns.

Written under a hidden temp name in the same folder, fsynced, renamed over the target, then the
folder fsynced so that the rename itself survives a power cut. Readers see the old file or the
new one, never half of one; the dot prefix keeps pyarrow datasets from ever reading the temp file.
A file of an object-storage output_dir's working copy is then sent whole, in one request (data.remote.push).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from trbench.data import remote


def write_atomic(path: Path, write: Callable[[Path], object]) -> None:
    """Call write(temp_path), then make the result the file at `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    remote.push(path)


def write_text_atomic(path: Path, text: str) -> None:
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
