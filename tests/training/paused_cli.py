"""``xsell`` with a training checkpoint that pauses, for the crash tests.

    python -m tests.training.paused_cli nightly ...

With XSELL_TEST_PAUSE_AT=<stage> (read, fit, write, publish) the run writes its pid
to the file XSELL_TEST_PAUSE_MARKER names and sleeps XSELL_TEST_PAUSE_S seconds
(default 120) at that stage, so a test can SIGKILL it there.
"""

from __future__ import annotations

import functools
import os
import time

import training.train
from training.cli import main


def pause(stage: str) -> None:
    if os.environ.get("XSELL_TEST_PAUSE_AT") != stage:
        return
    with open(os.environ["XSELL_TEST_PAUSE_MARKER"], "w", encoding="utf-8") as fh:
        fh.write(str(os.getpid()))
    time.sleep(float(os.environ.get("XSELL_TEST_PAUSE_S", "120")))


if __name__ == "__main__":
    training.train.train = functools.partial(training.train.train, checkpoint=pause)
    main()
