"""Writing a file whole or not at all: into a temporary file beside it, then one rename over it."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def replaced(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (``<name>.<pid>-<random>.tmp``) to write to. On a clean exit it
    replaces ``path`` in one rename; on an error it is deleted and ``path`` is as it was (an earlier file stays
    whole, and a reader never sees half a file). The folder is made if missing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
