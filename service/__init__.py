"""The xsell REST service: ``create_app`` builds the Flask app, ``xsell serve`` runs it.

Nothing heavy is imported here: ``service.gunicorn_conf`` must run (and set
the environment: BLAS threads, the metrics folder) before numpy or
prometheus_client are imported.
"""


def create_app(config: dict | None = None):
    """Build the Flask application (see :func:`service.app.create_app`)."""
    from .app import create_app as _create_app

    return _create_app(config)


__all__ = ["create_app"]
