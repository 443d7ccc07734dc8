"""The ``vsr`` command: builds the Typer app and turns every failure into one line.

No TensorFlow import happens here or in the command modules at import time,
so ``vsr --help`` stays fast.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
import sys
from types import FrameType

import typer

try:  # typer >= 0.20 vendors click
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover - older typer depends on click
    from click import exceptions as click_exceptions  # type: ignore[no-redef]

from vsr import __version__
from vsr.cli import compare, listing, metrics, models, sample, train, upscale
from vsr.errors import Interrupted, UsageError, VsrError, printable

app = typer.Typer(
    name="vsr",
    help="Video super-resolution with ESRGAN: make videos 4x larger and sharper.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command("upscale", no_args_is_help=True)(upscale.upscale)
app.command("stages")(listing.stages)
app.command("presets")(listing.presets)
app.add_typer(models.app, name="models")
app.command("sample")(sample.sample)
app.command("extract", no_args_is_help=True)(train.extract)
app.command("train", no_args_is_help=True)(train.train)
app.command("metrics", no_args_is_help=True)(metrics.metrics)
app.command("compare", no_args_is_help=True)(compare.compare)


def _version(value: bool) -> None:
    if value:
        print(f"vsr {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log more detail."),
) -> None:
    logging.getLogger("vsr").setLevel(logging.DEBUG if verbose else logging.INFO)


class _LineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        prefix = "vsr: " if record.levelno < logging.WARNING else f"vsr: {record.levelname.lower()}: "
        return prefix + printable(record.getMessage())


def _setup_logging() -> None:
    logger = logging.getLogger("vsr")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_LineFormatter())
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter


#: Keras 3's backends, and the module each needs.
_BACKENDS = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch", "numpy": "numpy", "openvino": "openvino"}


def _check_backend() -> None:
    """``KERAS_BACKEND`` names a backend Keras has and that is installed, or the run stops with one line."""
    name = os.environ.get("KERAS_BACKEND")
    if name is None:
        return
    if name not in _BACKENDS:
        raise UsageError(f"KERAS_BACKEND={name}: not a Keras backend (choose one of {', '.join(_BACKENDS)})")
    if importlib.util.find_spec(_BACKENDS[name]) is None:
        raise UsageError(f"KERAS_BACKEND={name}: {_BACKENDS[name]} is not installed (pip install {_BACKENDS[name]})")


def _keep_home_clean() -> None:
    """Keras writes its settings file under ``~/.keras`` when imported: it goes into vsr's cache instead.

    (OpenVINO's converter would write a client id under ``~/intel``: its plugin stops that, ``stages/openvino``.)
    """
    if "KERAS_HOME" not in os.environ:
        from vsr.models.store import cache_dir

        os.environ["KERAS_HOME"] = str(cache_dir() / "keras")


def _on_signal(signum: int, frame: FrameType | None) -> None:
    # Our own exception, not KeyboardInterrupt: Typer turns that into a silent exit 130.
    raise Interrupted(signal.Signals(signum).name)


def _fail(message: str, code: int) -> int:
    try:
        print(f"vsr: error: {printable(message)}", file=sys.stderr)
    except OSError:  # a terminal that hung up (SIGHUP): the exit code and the report still say it
        pass
    return code


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``vsr`` script; returns the exit code.

    Exit codes: 0 success, 1 failure (bad input, encoding error), 2 usage
    error (unknown option, preset, stage or model), 128 + the signal when
    interrupted: 130 (SIGINT), 143 (SIGTERM), 129 (SIGHUP: a closed terminal
    or a dropped ssh connection).
    """
    _setup_logging()
    _keep_home_clean()
    logging.raiseExceptions = False  # a log line to a hung-up terminal must not become a traceback
    for name in ("SIGTERM", "SIGINT", "SIGHUP"):
        signal.signal(getattr(signal, name), _on_signal)
    try:
        _check_backend()
        result = app(args=argv, prog_name="vsr", standalone_mode=False)
    except click_exceptions.NoArgsIsHelpError as exc:
        print(exc.ctx.get_help() if exc.ctx else "", file=sys.stderr)
        return 2
    except click_exceptions.UsageError as exc:
        return _fail(exc.format_message(), 2)
    except typer.Abort:
        return _fail("interrupted", 130)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except VsrError as exc:
        return _fail(str(exc), exc.exit_code)
    except OSError as exc:  # what the file system said, as one line
        return _fail(f"{exc.filename or 'vsr'}: {exc.strerror or exc}", 1)
    except Exception as exc:  # the last line of defence: still one line, no traceback
        if os.environ.get("VSR_DEBUG"):
            raise
        return _fail(f"internal error: {type(exc).__name__}: {exc} (set VSR_DEBUG=1 for a traceback)", 1)
    return result if isinstance(result, int) else 0


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
