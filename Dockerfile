# xsell: the recommendation API under gunicorn. Models live on a volume at /models;
# the nightly job (see docker-compose.yml) writes new versions there and the
# service picks them up without a restart.
FROM python:3.11.7-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    OPENBLAS_NUM_THREADS=1

# Dependencies come from pyproject.toml (the package is installed, not run from source).
COPY . /src
# The compiled answer path (recsys/fastpath.py, numba) is compiled once here, into the
# installed package's cache, instead of in every container at start.
RUN pip install /src \
    && rm -rf /src \
    && OPENBLAS_NUM_THREADS=1 python -c "from recsys import fastpath; fastpath.warm()" \
    && useradd --system --uid 10001 --create-home --home-dir /home/xsell xsell \
    && mkdir -p /models \
    && chown xsell:xsell /models

USER xsell
WORKDIR /home/xsell
VOLUME ["/models"]
EXPOSE 8000

# Set XSELL_API_KEYS or XSELL_API_KEYS_FILE: without keys the API answers loopback only.
ENV XSELL_MODELS_DIR=/models

HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

# gunicorn with service/gunicorn_conf.py (workers per core, graceful shutdown on SIGTERM).
CMD ["xsell", "serve", "--models", "/models", "--host", "0.0.0.0", "--port", "8000"]
