"""Checks made before a long fit: a run that cannot write its result fails at once.

Without them ``xsell train`` on a read-only or full ``--models`` folder spends the
whole fit and then dies while writing the version.
"""

from __future__ import annotations

import os
import shutil

from recsys.exceptions import ConfigError

# Less free space than this on the models' filesystem and training is not started.
MIN_FREE_BYTES = 16 * 1024 * 1024
_PROBE_BYTES = 64 * 1024


def check_models_writable(models_dir: str, min_free: int = MIN_FREE_BYTES) -> None:
    """Create ``models_dir`` if needed and write (then remove) a probe file in it; raise
    :class:`ConfigError` with one clear line when it is not writable or nearly full."""
    if "://" in str(models_dir):
        return  # an object store: checked by its own client
    try:
        os.makedirs(models_dir, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--models {models_dir}: cannot create the folder "
                          f"({exc.strerror or exc})") from None
    probe = os.path.join(models_dir, f".tmp-probe-{os.getpid()}")
    try:
        with open(probe, "wb") as fh:
            fh.write(b"\0" * _PROBE_BYTES)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        raise ConfigError(f"--models {models_dir}: cannot write there "
                          f"({exc.strerror or exc}); nothing was trained") from None
    finally:
        try:
            os.remove(probe)
        except OSError:
            pass
    try:
        free = shutil.disk_usage(models_dir).free
    except OSError:
        return
    if free < min_free:
        raise ConfigError(f"--models {models_dir}: only {free // 1024} KiB free on its disk "
                          f"(at least {min_free // (1024 * 1024)} MiB needed); nothing was "
                          f"trained")
