"""Load a model version the way the service serves it: verified, then smoke-queried.

Shared by the service's model store and ``xsell models promote`` (which must refuse a
version the service could not load), so neither side imports the other.
"""

from __future__ import annotations

import numpy as np

from ..artifacts import LoadedVersion, load_version
from ..exceptions import ModelLoadError, XsellError
from . import Recommender

# What a broken or truncated file raises while it is read or first queried.
LOAD_ERRORS = (XsellError, OSError, ValueError, KeyError, IndexError, TypeError, MemoryError)


def load_servable(models_dir: str, version: str) -> tuple[Recommender, LoadedVersion]:
    """Load and verify one version and touch every array a request will touch, so a broken
    file fails here (and, in a preloading gunicorn master, lazily built parts are built
    before the fork). Raises ``XsellError`` (or OSError, ...) if it is not usable."""
    loaded = load_version(models_dir, version, verify=True)
    rec = Recommender.load(loaded)
    if len(rec.items) == 0:
        raise XsellError(f"version {version}: the model has no items")
    rec.popular(1, None, np.zeros(0, dtype=np.int64))
    probe = int(np.argmax(rec.popularity.counts_))
    rec.also_bought(probe, 1)
    rec.basket(np.asarray([probe]), 1)
    rec.next_best_for_history(np.asarray([probe]), 1)
    if len(rec.customers):
        rec.next_best(0, 1)
    return rec, loaded


def check_servable(models_dir: str, version: str) -> None:
    """Raise ``ModelLoadError`` unless the service could load and answer with ``version``."""
    try:
        load_servable(models_dir, version)
    except ModelLoadError:
        raise
    except LOAD_ERRORS as exc:
        raise ModelLoadError(f"version {version} cannot be served ({exc}); not promoted"
                             ) from None
