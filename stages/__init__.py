"""vsr's built-in stages, each module a plugin registered through the ``vsr`` entry-point group."""
