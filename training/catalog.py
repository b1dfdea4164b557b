"""Catalog refresh without retraining: ``xsell catalog update``.

Prices and stock change daily; models need not. The update writes a NEW
model version: every file of the base version (default: the current one)
copied unchanged except the item metadata, which is rebuilt from the new
catalog, with a fresh manifest and checksums. It is published the way
training publishes (``recsys.artifacts``: complete folder first, then an
atomic ``CURRENT`` swap), so a running service picks it up like any new
version and old versions stay available for ``xsell models promote``.

Items the new catalog does not list keep their previous metadata (a partial
catalog, e.g. today's price changes, is a valid update). Items the catalog
lists but the models never saw are counted and ignored: recommending them
needs a retrain.
"""

from __future__ import annotations

import logging
import os
import shutil
from datetime import datetime, timezone

from recsys.artifacts import VersionWriter, clean_temporary, current_version, load_version
from recsys.data import Catalog, read_catalog
from recsys.exceptions import ModelLoadError
from recsys.rules import META_ARRAYS, META_JSON, build_item_meta, read_item_meta, write_item_meta
from recsys.vocab import Vocab

log = logging.getLogger(__name__)

_META_FILES = {f"{name}.npy" for name in META_ARRAYS} | {f"{name}.json" for name in META_JSON}


def merge_catalog(items: Vocab, old, catalog: Catalog):
    """Item metadata: the new catalog's values where it has them, the old ones elsewhere."""
    hit = items.indices(catalog.ids) >= 0
    meta = build_item_meta(items, catalog, None, base=old)
    return meta, int(hit.sum()), int((~hit).sum())


def update_catalog(models_dir: str, catalog: str, columns: dict | None = None,
                   strict: bool = False, query: str | None = None,
                   base_version: str | None = None, on_report=None) -> dict:
    """Write a new version: ``base_version``'s models + the refreshed catalog; return a summary."""
    clean_temporary(models_dir)
    base = load_version(models_dir, base_version)
    cat, report = read_catalog(catalog, columns, strict=strict, query=query)
    if on_report:
        on_report(report, None)
    items = Vocab(base.array("items", mmap=False))
    meta, in_catalog, unknown = merge_catalog(items, read_item_meta(base), cat)
    if unknown:
        log.warning("%d catalog ids are not in model version %s (retrain to recommend them)",
                    unknown, base.version)
    was_current = current_version(models_dir) == base.version
    manifest = {k: v for k, v in base.manifest.items()
                if k not in ("files", "version", "created_at")}
    manifest["previous_version"] = base.version
    manifest["catalog_update"] = {
        "base_version": base.version,
        "catalog": report.to_dict(),
        "updated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "items_in_catalog": in_catalog,
        "unknown_catalog_ids": unknown,
    }
    manifest.setdefault("data", {})
    if isinstance(manifest["data"], dict):
        manifest["data"] = dict(manifest["data"], catalog=report.to_dict())
    writer = VersionWriter(models_dir)
    with writer:
        for name in sorted(base.manifest.get("files", {})):
            if name in _META_FILES:
                continue
            try:
                shutil.copyfile(os.path.join(base.path, name), os.path.join(writer.tmp, name))
            except OSError as exc:
                raise ModelLoadError(f"version {base.version}: cannot copy {name} "
                                     f"({exc.strerror})") from None
            writer.files.append(name)
        write_item_meta(writer, meta)
        version = writer.commit(manifest, make_current=was_current)
    log.info("catalog update: version %s from %s", version, base.version)
    return {"version": version, "base_version": base.version, "published": was_current,
            "items": len(items), "items_in_catalog": in_catalog,
            "unknown_catalog_ids": unknown, "rows_read": report.rows_read,
            "rows_used": report.rows_used, "rows_rejected": report.rows_rejected}
