"""vsr's command line: one module per command, joined in :mod:`vsr.cli.main`."""
