"""Moving aggregates from Spark to the driver, and what the driver received.

Every result the engine collects goes through :func:`collect_arrays`, which
records its size: the bench prints the largest (the engine never collects
order lines, only aggregates the model holds anyway).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

# (what, rows, bytes) of every collected result, newest last.
COLLECTED: list[tuple[str, int, int]] = []


def collect_arrays(df, columns: list[str], what: str) -> dict[str, np.ndarray]:
    """The named columns of ``df`` as numpy arrays (through Arrow, not Python rows)."""
    frame = df.select(*columns)
    if hasattr(frame, "toArrow"):
        table = frame.toArrow()
        out = {c: table.column(c).to_numpy() for c in columns}
    else:  # Spark 3.5: pandas over Arrow
        pdf = frame.toPandas()
        out = {c: pdf[c].to_numpy() for c in columns}
    n = len(next(iter(out.values()))) if out else 0
    size = sum(_nbytes(v) for v in out.values())
    COLLECTED.append((what, n, size))
    return out


def local_frame(spark, **columns):
    """A DataFrame of driver-side arrays (name=values; numpy int32 -> int, int64 -> long,
    float64 -> double, str -> string), handed over as Arrow.

    ``spark.createDataFrame`` of Python rows pickles them through Python worker
    processes on the executors; through Arrow the JVM reads the batches itself, so the
    executors run no Python at all."""
    import pyarrow as pa
    from pyspark.sql import DataFrame

    def column(values):
        values = np.asarray(values)
        if values.dtype.kind in "UO":
            return pa.array(values.tolist(), type=pa.string())
        return pa.array(values)

    table = pa.table({name: column(values) for name, values in columns.items()})
    if hasattr(DataFrame, "toArrow"):  # Spark 4 takes Arrow tables
        return spark.createDataFrame(table)
    return spark.createDataFrame(table.to_pandas())  # Spark 3.5: pandas, through Arrow


def _nbytes(values: np.ndarray) -> int:
    if values.dtype == object:
        return sum(np.asarray(v).nbytes if v is not None else 0 for v in values) + 8 * len(values)
    return int(values.nbytes)


def largest_collected() -> tuple[str, int, int] | None:
    return max(COLLECTED, key=lambda x: x[2]) if COLLECTED else None


def to_csr(arrays: dict, row: str, col: str, value: str, shape: tuple, dtype) -> sp.csr_matrix:
    """A canonical CSR (sorted indices, no duplicates) from collected triplets."""
    m = sp.csr_matrix((np.asarray(arrays[value], dtype=dtype),
                       (np.asarray(arrays[row], dtype=np.int64),
                        np.asarray(arrays[col], dtype=np.int64))), shape=shape)
    m.sum_duplicates()
    m.sort_indices()
    return m


def factors(arrays: dict, n: int, rank: int) -> np.ndarray:
    """Dense float32 factors from MLlib's (id, features) rows; rows never seen stay 0."""
    out = np.zeros((n, rank), dtype=np.float32)
    ids = np.asarray(arrays["id"], dtype=np.int64)
    if len(ids):
        out[ids] = np.stack([np.asarray(v, dtype=np.float32) for v in arrays["features"]])
    return out
