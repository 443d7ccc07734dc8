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
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path


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


@contextlib.contextmanager
def native_stderr_to(path: Path | None) -> Iterator[None]:
    """Native writes to fd 2 (TensorFlow's ``E0000 ... meta_optimizer`` lines) go to ``path``, not the terminal.

    Unlike :func:`quiet_native_stderr`, Python's own stderr (vsr's log lines, the progress bar, warnings)
    keeps the terminal: ``sys.stderr`` and vsr's log handler move to a copy of the original fd 2 for the
    duration. With ``-v`` or ``VSR_DEBUG=1`` nothing is redirected.
    """
    logger = logging.getLogger("vsr")
    if os.environ.get("VSR_DEBUG") or logger.isEnabledFor(logging.DEBUG):
        yield
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    target = os.open(path or os.devnull, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    python_side = os.fdopen(os.dup(saved), "w", buffering=1, encoding="utf-8", errors="backslashreplace")
    previous = sys.stderr
    handlers = [h for h in logger.handlers if isinstance(h, logging.StreamHandler) and h.stream is previous]
    sys.stderr = python_side
    for handler in handlers:
        handler.setStream(python_side)
    os.dup2(target, 2)
    try:
        yield
    finally:
        python_side.flush()
        os.dup2(saved, 2)
        sys.stderr = previous
        for handler in handlers:
            handler.setStream(previous)
        python_side.close()
        os.close(saved)
        os.close(target)
