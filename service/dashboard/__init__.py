"""The merchandiser's and CRM analyst's workbench at ``/dashboard`` (admin role).

Server-rendered pages (Jinja templates, one stylesheet and one script shipped
in this package: no CDN, no external font) over the served model and the
models folder. A browser signs in once with an admin key through a form and
keeps a signed session cookie (:mod:`.session`); API clients may send their
key in a header instead. Recommendation lists are the API's own answers: the
views call the ``/v1`` view functions in a nested request context, so the
dashboard shows exactly what a storefront gets, with the same parameter checks.
"""

from __future__ import annotations

from flask import Blueprint

dashboard_bp = Blueprint("dashboard", __name__, url_prefix="/dashboard",
                         template_folder="templates", static_folder="static",
                         static_url_path="/static")

from . import views  # noqa: E402,F401  (registers the routes on dashboard_bp)
