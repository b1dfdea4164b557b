"""The xsell REST service (Flask). Reads model versions; never trains."""

import os

# Must precede the first numpy import in every gunicorn worker.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
