"""Console helpers shared by the ``xsell`` commands (``training.cli``, ``training.nightly``):
exit codes, error handling, progress bars and the data report on stderr."""

from __future__ import annotations

import functools
import sys

import click

from recsys.exceptions import ConfigError, DataError, ModelLoadError, XsellError

EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2


def handle_errors(func):
    """Turn library errors into one clear line on stderr and a fitting exit code."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (DataError, ConfigError) as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_BAD_INPUT)
        except ModelLoadError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_FAILURE)
        except XsellError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_FAILURE)
        except OSError as exc:  # a full disk, a read-only folder: one line, no traceback
            where = f"{exc.filename}: " if exc.filename else ""
            click.echo(f"error: {where}{exc.strerror or exc}", err=True)
            sys.exit(EXIT_FAILURE)

    return wrapper


def progress_factory(desc: str, total: int | None = None):
    """A tqdm bar on a terminal, nothing otherwise (cron logs stay clean)."""
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, disable=not sys.stderr.isatty(), leave=False,
               file=sys.stderr)

    class _Bar:
        def __call__(self, n=1):
            bar.update(n)

        def close(self):
            bar.close()

    return _Bar()


def echo_report(report, catalog_report=None) -> None:
    click.echo(report.format(), err=True)
    if catalog_report is not None:
        click.echo(catalog_report.format(), err=True)


def parse_columns(text: str | None) -> dict[str, str]:
    from recsys.data import parse_column_map

    return parse_column_map(text)
