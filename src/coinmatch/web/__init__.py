"""The browser app over the Python API: `coinmatch serve` (see :mod:`coinmatch.web.app`)."""
