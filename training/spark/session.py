"""The Spark session of the Spark engine, and Spark failures as one clear error.

Settings come from the config file's ``[spark]`` table (``master``,
``app_name``, ``driver_memory``, ``conf`` with any ``spark.*`` key), the
master from ``--spark-master`` above all. Local mode (``local[*]``) is the
default; under ``spark-submit`` the master and resources spark-submit was
given win (an existing session is reused, see docs/SPARK.md).
"""

from __future__ import annotations

import logging
import os
import shutil
from contextlib import contextmanager

from recsys.exceptions import ConfigError, XsellError

log = logging.getLogger(__name__)

_LOG4J = os.path.join(os.path.dirname(__file__), "log4j2.properties")


class SparkEngineError(XsellError):
    """Spark itself failed (the JVM, an executor, the cluster): no version is published."""


def java_available() -> bool:
    """Whether a Java runtime can be started (``JAVA_HOME`` or ``java`` on the PATH)."""
    home = os.environ.get("JAVA_HOME")
    if home and os.path.exists(os.path.join(home, "bin", "java")):
        return True
    return shutil.which("java") is not None


def spark_settings(config: dict, master: str | None = None) -> dict:
    """The ``[spark]`` settings with ``master`` (``--spark-master``) applied."""
    cfg = dict(config.get("spark") or {})
    if master:
        cfg["master"] = master
    conf = cfg.get("conf") or {}
    if not isinstance(conf, dict) or not all(isinstance(k, str) for k in conf):
        raise ConfigError(f"spark.conf must be a table of spark.* settings (got {conf!r})")
    return cfg


def start_session(config: dict, master: str | None = None):
    """A SparkSession for the engine: UTC time zone, quiet logs, the configured resources."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise ConfigError("--engine spark needs PySpark: pip install 'xsell[spark]' "
                          "(and a Java runtime, 17 or newer)") from None
    if not java_available():
        raise ConfigError("--engine spark needs a Java runtime (17 or newer): install one "
                          "(Debian: apt-get install openjdk-17-jre-headless) or set JAVA_HOME")
    cfg = spark_settings(config, master)
    builder = SparkSession.builder.appName(str(cfg.get("app_name") or "xsell-train"))
    if cfg.get("master") and not os.environ.get("SPARK_SUBMITTED"):
        builder = builder.master(str(cfg["master"]))
    if cfg.get("driver_memory"):
        builder = builder.config("spark.driver.memory", str(cfg["driver_memory"]))
    # ANSI mode off (Spark 4 turns it on): a value that does not convert becomes null and
    # is counted by the data report, as the local reader does, instead of failing the job.
    builder = (builder.config("spark.sql.session.timeZone", "UTC")
               .config("spark.sql.ansi.enabled", "false")
               .config("spark.ui.showConsoleProgress", "false")
               .config("spark.ui.enabled", "false")
               # Driver-side arrays travel as Arrow (frames.local_frame), never as Python
               # rows through Python workers: the executors run no Python.
               .config("spark.sql.execution.arrow.pyspark.enabled", "true")
               .config("spark.sql.execution.arrow.pyspark.fallback.enabled", "false")
               # MLlib's ALS calls a native BLAS where the machine has one (libblas.so.3):
               # one thread per task, as Spark already runs a task per core.
               .config("spark.executorEnv.OPENBLAS_NUM_THREADS", "1")
               .config("spark.driver.extraJavaOptions", f"-Dlog4j2.configurationFile={_LOG4J}"))
    for key, value in (cfg.get("conf") or {}).items():
        builder = builder.config(key, str(value))
    with spark_errors("starting Spark"):
        spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


@contextmanager
def spark_errors(what: str):
    """Turn a Spark/JVM failure inside the block into one SparkEngineError line."""
    try:
        yield
    except XsellError:
        raise
    except Exception as exc:  # noqa: BLE001 - py4j and pyspark raise many unrelated types
        name = type(exc).__name__
        if not _is_spark_error(exc):
            raise
        raise SparkEngineError(f"Spark failed while {what}: {name}: {_first_line(exc)}") from None


def _is_spark_error(exc: Exception) -> bool:
    module = type(exc).__module__ or ""
    return module.startswith(("py4j", "pyspark")) or isinstance(exc, (ConnectionError,
                                                                       EOFError))


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("at ", "File ", "Traceback")):
            return line[:300]
    return type(exc).__name__
