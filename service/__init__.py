"""The xsell REST service: ``create_app`` builds the Flask app, ``xsell serve`` runs it."""

from .app import create_app

__all__ = ["create_app"]
