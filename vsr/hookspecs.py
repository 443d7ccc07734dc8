"""The hooks by which plugins extend vsr.

Every hook is called once, when the plugin manager is built, and receives a
``register`` callable; the plugin calls it once per thing it provides. Hooks
build the pipeline; frames never travel through hook calls.

Plugins are modules or objects with functions marked ``@vsr.hookimpl``,
listed in the ``vsr`` entry-point group of their package, for example::

    [project.entry-points.vsr]
    my_sharpen = "my_package.sharpen"

vsr's own stages, models and presets are registered exactly this way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from vsr.registry import EngineRegister, ModelRegister, PresetRegister, StageRegister

hookspec = pluggy.HookspecMarker("vsr")
hookimpl = pluggy.HookimplMarker("vsr")


@hookspec
def register_decoders(register: StageRegister) -> None:
    """Register decoder stages: they turn a file into frames.

    Args:
        register: call ``register(StageClass)`` for each decoder; the class is
            a :class:`vsr.Stage` subclass with a ``name`` unique among
            decoders. Decoders implement ``probe()`` and yield frames from
            ``process()``, ignoring its (empty) input.

    Returns:
        Nothing; every plugin's implementation is called.
    """


@hookspec
def register_upscalers(register: StageRegister) -> None:
    """Register upscaler stages: they map frames to larger frames.

    Args:
        register: call ``register(StageClass)`` for each upscaler (a
            :class:`vsr.Stage` subclass with a ``name`` unique among upscalers).

    Returns:
        Nothing; every plugin's implementation is called.
    """


@hookspec
def register_engines(register: EngineRegister) -> None:
    """Register inference engines: what the built-in ``esrgan`` upscaler runs its network on.

    Args:
        register: call ``register(EngineClass)`` for each engine, a
            :class:`vsr.Engine` subclass with a unique ``name``; the upscaler
            picks it with ``engine = "NAME"``, or by ``"auto"`` (see
            :meth:`vsr.Engine.auto_rank`).

    Returns:
        Nothing; every plugin's implementation is called.
    """


@hookspec
def register_smoothers(register: StageRegister) -> None:
    """Register temporal smoother stages, run between upscaler and encoder.

    Args:
        register: call ``register(StageClass)`` for each smoother.

    Returns:
        Nothing; every plugin's implementation is called.
    """


@hookspec
def register_encoders(register: StageRegister) -> None:
    """Register encoder stages: they write frames to the output file.

    Args:
        register: call ``register(StageClass)`` for each encoder. An encoder
            writes to ``job.output`` (a temporary path renamed into place by
            vsr when the run completes), with ``job.metadata`` as container
            tags, and yields each frame it wrote. Encoders that also
            implement :class:`vsr.SegmentedEncoder` get resumable,
            segmented runs.

    Returns:
        Nothing; every plugin's implementation is called.
    """


@hookspec
def register_models(register: ModelRegister) -> None:
    """Register super-resolution models by name, for presets and ``--set upscale.model``.

    Args:
        register: call ``register(ModelSpec(...))`` for each model; see
            :class:`vsr.ModelSpec`.

    Returns:
        Nothing; every plugin's implementation is called.
    """


@hookspec
def register_presets(register: PresetRegister) -> None:
    """Register presets: named tables of stage choices and options.

    Args:
        register: call ``register(path)`` with the path of a preset TOML
            file; the preset's name is the file's stem.

    Returns:
        Nothing; every plugin's implementation is called.
    """
