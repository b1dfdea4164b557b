"""The offline side of xsell: the ``xsell`` command line, training pipeline and nightly job."""

import os

# implicit's ALS is many times slower when OpenBLAS also spawns threads;
# this must happen before numpy is first imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
