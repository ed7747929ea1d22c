"""coinmatch: find the very coin of a photograph in a catalogue (instance-level retrieval).

The public API (see :mod:`coinmatch.api`)::

    from coinmatch import Catalogue
    with Catalogue.open("cat_dir") as cat:
        result = cat.search("photo.jpg", verify=True)
"""

__version__ = "0.2.0"


class CoinmatchError(Exception):
    """An error meant for the user: one clear sentence naming the file and the cause."""


__all__ = ["Catalogue", "CoinmatchError", "Match", "SearchResult", "compare", "__version__"]


def __getattr__(name: str):
    """The API is imported when first asked for, so that ``from coinmatch import CoinmatchError`` stays light."""
    if name in ("Catalogue", "Match", "SearchResult", "compare"):
        from coinmatch import api

        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
