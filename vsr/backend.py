"""Importing Keras (and with it TensorFlow) without its C++ start-up chatter.

TensorFlow's native code logs to file descriptor 2 before its logging is
initialised ("Could not find cuda drivers...", "failed call to cuInit"), and
``TF_CPP_MIN_LOG_LEVEL`` does not reach those lines. vsr promises one line per
problem on stderr, so building the model (the first import, the device query)
runs with fd 2 pointed at /dev/null. Python exceptions are unaffected (they are raised, not
printed); ``VSR_DEBUG=1`` keeps everything visible.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Silence native writes to fd 2 for the duration of the block."""
    if os.environ.get("VSR_DEBUG"):
        yield
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
