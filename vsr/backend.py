"""Importing Keras (and with it TensorFlow) without its C++ start-up chatter.

TensorFlow's native code logs to file descriptor 2 before its logging is
initialised ("Could not find cuda drivers...", "failed call to cuInit"), and
``TF_CPP_MIN_LOG_LEVEL`` does not reach those lines. vsr promises one line per
problem on stderr, so building the model (the first import, the device query)
runs with fd 2 pointed at /dev/null, while vsr's own log lines and Python's
stderr go on to the terminal through a saved copy of it. Python exceptions are
unaffected (they are raised, not printed); ``VSR_DEBUG=1`` keeps everything visible.
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
    """Silence native writes to fd 2 for the duration of the block; vsr's own lines still reach the terminal.

    ``VSR_DEBUG=1`` keeps everything visible.
    """
    if os.environ.get("VSR_DEBUG"):
        yield
        return
    with _native_stderr(None, python_stderr=False):
        yield


@contextlib.contextmanager
def native_stderr_to(path: Path | None) -> Iterator[None]:
    """Native writes to fd 2 (TensorFlow's ``E0000 ... meta_optimizer`` lines) go to ``path``, not the terminal.

    With ``-v`` or ``VSR_DEBUG=1`` nothing is redirected.
    """
    if os.environ.get("VSR_DEBUG") or logging.getLogger("vsr").isEnabledFor(logging.DEBUG):
        yield
        return
    with _native_stderr(path, python_stderr=True):
        yield


@contextlib.contextmanager
def _native_stderr(path: Path | None, python_stderr: bool) -> Iterator[None]:
    """Point fd 2 at ``path`` (None: /dev/null) while vsr's log lines keep the terminal.

    vsr's log handlers (and ``sys.stderr`` too where ``python_stderr``: the progress bar) move to a copy of the
    original fd 2 for the duration, so vsr's warnings (a damaged model cache, say) are shown while native
    libraries, and other libraries' Python chatter where not ``python_stderr``, are quiet.
    """
    logger = logging.getLogger("vsr")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    target = os.open(path or os.devnull, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    python_side = os.fdopen(os.dup(saved), "w", buffering=1, encoding="utf-8", errors="backslashreplace")
    previous = sys.stderr
    handlers = [(h, h.stream) for h in logger.handlers if isinstance(h, logging.StreamHandler) and _on_fd2(h.stream)]
    if python_stderr and _on_fd2(previous):
        sys.stderr = python_side
    for handler, _ in handlers:
        handler.setStream(python_side)
    os.dup2(target, 2)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):  # a terminal that hung up meanwhile
            python_side.flush()
        os.dup2(saved, 2)
        sys.stderr = previous
        for handler, stream in handlers:
            handler.setStream(stream)
        with contextlib.suppress(OSError):
            python_side.close()
        os.close(saved)
        os.close(target)


def _on_fd2(stream: object) -> bool:
    """Whether ``stream`` writes to file descriptor 2 (not a buffer that some caller put in its place)."""
    fileno = getattr(stream, "fileno", None)
    try:
        return fileno is not None and fileno() == 2
    except (OSError, ValueError):  # a buffer in fd 2's place (a test's, say), or a closed stream
        return False
