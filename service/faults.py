"""Guards of the serving process against faults on disk.

The served arrays are memory-mapped, so a file of the served version that is
truncated or rewritten in place after it was loaded turns into SIGBUS (or wrong
answers) at the next request that touches it. Serving must not trust files after
load: :func:`file_identity` records each file's inode, size and modification time
when a version is loaded, and the model watcher compares them on every poll
(:meth:`service.store.ModelStore.check`), so a changed file is found within one
poll interval and the version is reloaded, the previous one restored, or the
service reports itself not ready, instead of crashing worker after worker.
"""

from __future__ import annotations

import os


def file_identity(path: str) -> dict[str, tuple[int, int, int]]:
    """``{file name: (inode, size, mtime_ns)}`` of the regular files in a version folder."""
    out = {}
    try:
        names = os.listdir(path)
    except OSError:
        return out
    for name in names:
        try:
            st = os.stat(os.path.join(path, name))
        except OSError:
            continue
        out[name] = (st.st_ino, st.st_size, st.st_mtime_ns)
    return out


def changed_files(path: str, identity: dict[str, tuple[int, int, int]]) -> list[str]:
    """Names of the files recorded in ``identity`` changed in place since (same inode, other
    size or modification time). A file removed or replaced by a rename is not listed: the
    mapping keeps the old inode's pages, so what is served stays whole."""
    changed = []
    for name, before in identity.items():
        try:
            st = os.stat(os.path.join(path, name))
        except OSError:
            continue
        if st.st_ino == before[0] and (st.st_size, st.st_mtime_ns) != before[1:]:
            changed.append(name)
    return sorted(changed)


def redact(message: str, *paths: str | None) -> str:
    """``message`` with the given server paths replaced by ``MODELS_DIR`` (what anonymous
    clients of ``/readyz`` may see: no absolute paths of the server)."""
    for path in sorted({p for p in paths if p}, key=len, reverse=True):
        message = message.replace(path, "MODELS_DIR")
    return message
