"""vsr: video super-resolution with ESRGAN in Keras."""

from vsr.hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["__version__", "hookimpl"]
