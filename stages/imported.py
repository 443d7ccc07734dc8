"""Models the user imported into the store (``vsr models import``, ``--model PATH``).

Registered last, so that a name a plugin registers later wins over an
earlier import of the same name (with a warning) instead of breaking every
command.
"""

from __future__ import annotations

import logging

from vsr import ModelRegister, hookimpl, imported_models, imported_spec

log = logging.getLogger("vsr")


@hookimpl(trylast=True)
def register_models(register: ModelRegister) -> None:
    for sidecar in imported_models():
        owner = register.items.get(sidecar["name"])
        if owner is not None:
            log.warning("imported model %s is hidden by plugin %s's model of that name", sidecar["name"], owner.plugin)
            continue
        register(imported_spec(sidecar))
