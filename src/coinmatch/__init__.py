"""coinmatch: find the very coin of a photograph in a catalogue (instance-level retrieval)."""

__version__ = "0.1.0"


class CoinmatchError(Exception):
    """An error meant for the user: one clear sentence naming the file and the cause."""
