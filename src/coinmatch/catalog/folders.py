"""A catalogue's folder as a whole: what makes a folder a catalogue, and replacing one catalogue with another in
a way that a crash at any moment cannot lose the last good one."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from coinmatch import CoinmatchError

DB_NAME = "catalog.sqlite"


class CatalogueError(CoinmatchError):
    """A catalogue cannot be used as asked; the message names the folder and the cause."""


def is_catalogue(path: str | Path) -> bool:
    return (Path(path) / DB_NAME).is_file()


def _set_aside(target: Path) -> Path:
    """Where :func:`replace_folder` keeps the catalogue it replaces until the new one is in place."""
    return target.with_name(f".{target.name}.replaced")


def replace_folder(new: Path, target: Path) -> None:
    """Move a freshly built catalogue into place, replacing any catalogue there.

    A folder cannot be swapped for another in one rename, so the old one is first set aside under a fixed name
    and the new one renamed into place. A crash between the two leaves no folder at ``target`` but the old
    catalogue set aside, which :func:`recover_folder` (called by every open and build) moves back: the last good
    catalogue is never lost."""
    recover_folder(target)
    if target.exists():
        if not is_catalogue(target) and any(target.iterdir()):
            raise CatalogueError(f"{target}: folder exists and is not a catalogue; refusing to overwrite it")
        aside = _set_aside(target)
        os.replace(target, aside)
        os.replace(new, target)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(new, target)


def recover_folder(target: Path) -> None:
    """Finish what an interrupted :func:`replace_folder` left: with no catalogue at ``target``, the one set aside
    goes back; with one there, the one set aside is removed."""
    aside = _set_aside(Path(target))
    if not aside.exists():
        return
    if Path(target).exists():
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.replace(aside, target)
