"""The Spark engine's tests: one local Spark session (local[2], 1g) for the module.

They skip only where no Java runtime or PySpark is installed, and never in
CI (``CI`` set): scripts/test.sh installs both there.
"""

import os

import pytest


def _spark_or_skip():
    from training.spark.session import java_available

    missing = None
    try:
        import pyspark  # noqa: F401
    except ImportError:
        missing = "PySpark is not installed (pip install '.[spark]')"
    if missing is None and not java_available():
        missing = "no Java runtime (apt-get install openjdk-17-jre-headless)"
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the Spark tests: {missing}")
        pytest.skip(missing)


@pytest.fixture(scope="session")
def spark():
    _spark_or_skip()
    from training.config import load_config
    from training.spark.session import start_session

    config = load_config(None, {"spark": {"master": "local[2]", "driver_memory": "1g",
                                          "conf": {"spark.sql.shuffle.partitions": "4",
                                                   "spark.default.parallelism": "2"}}})
    session = start_session(config)
    yield session
    session.stop()


@pytest.fixture(autouse=True, scope="module")
def _cached_frames_released():
    """One 1g session serves every module: the frames a module's reads and splits
    cached (MEMORY_AND_DISK) are released at its end, or they squeeze the memory left
    to later modules' aggregations (seen: AGGREGATE_OUT_OF_MEMORY in EASE's Gram)."""
    yield
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        return
    active = SparkSession.getActiveSession()
    if active is not None:
        active.catalog.clearCache()
