"""One plan per run: the preset, its overrides and the model, resolved once into an immutable object.

Everything that runs files takes a :class:`RunPlan`: the CLI, batches,
done-records, resume manifests and the benchmarks. It holds the stage class
of each role, its parsed and validated options, what each stage resolved
once (:meth:`vsr.stage.Stage.prepare`: the model and its weights digest), and
the settings hash that done-records and resume manifests are keyed by.
Strings from the command line are parsed here, at the edge, and never turned
back into strings.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

from vsr.options import parse_options
from vsr.presets import Preset, resolve_preset
from vsr.registry import Registry
from vsr.stage import Prepared, Stage


@dataclass(frozen=True)
class StagePlan:
    """The stage chosen for one role, with its validated options and what it prepared."""

    role: str
    name: str
    cls: type[Stage]
    options: Any
    prepared: Prepared


@dataclass(frozen=True)
class RunPlan:
    """Everything decided before the first file is opened; shared by every file of a run.

    Attributes:
        preset: the preset's name (for reports).
        stages: the enabled roles in pipeline order.
        settings: SHA-256 of every stage, its options (defaults filled in)
            and what it prepared (the model's weights digest): the settings'
            identity in done-records and resume manifests.
        registry: the plugins' registry the plan was made from.
        source: the resolved preset, overrides applied: what a worker in
            another process remakes the plan from (:mod:`vsr.running.units`).
        pinned: the options (``role.key``) the command line named: a stage
            keeps to them strictly where it would otherwise adapt the
            preset's choice (the encoder's codec to the output's container).
    """

    preset: str
    stages: tuple[StagePlan, ...]
    settings: str
    registry: Registry
    source: Preset
    pinned: frozenset[str] = frozenset()

    @property
    def scale(self) -> int:
        """How many times larger the output is than the input."""
        return math.prod(s.prepared.scale for s in self.stages)

    def stage(self, role: str) -> StagePlan | None:
        return next((s for s in self.stages if s.role == role), None)


def make_plan(registry: Registry, preset: Preset) -> RunPlan:
    """Validate every enabled stage's options, prepare each stage once, and hash the result.

    Raises:
        UsageError: an unknown stage, option or model, or an invalid value.
    """
    for choice in preset.disabled():  # off, but its options are checked: switching it on must not fail later
        cls = registry.stage(choice.role, choice.stage)
        parse_options(cls.Options, choice.options, f"{choice.role} stage {choice.stage!r}")
    stages = []
    for choice in preset.choices():
        cls = registry.stage(choice.role, choice.stage)
        options = parse_options(cls.Options, choice.options, f"{choice.role} stage {choice.stage!r}")
        stages.append(StagePlan(choice.role, choice.stage, cls, options, cls.prepare(options, registry)))
    parts = [[s.role, s.name, dataclasses.asdict(s.options), dict(s.prepared.identity)] for s in stages]
    settings = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
    return RunPlan(preset.name, tuple(stages), settings, registry, preset)


def plan_run(
    registry: Registry,
    preset: str,
    *,
    overrides: list[str] | None = None,
    model: str | None = None,
    smooth: bool | None = None,
    video_track: int | None = None,
) -> RunPlan:
    """The plan for ``vsr upscale``: a preset (name or file) and the command line's overrides of it."""
    chosen = resolve_preset(registry, preset).with_overrides(list(overrides or []))
    pinned = {item.partition("=")[0].strip() for item in overrides or []}
    values: list[tuple[str, str, Any]] = []
    if model is not None:
        values.append(("upscale", "model", model))
    if smooth is not None:
        values.append(("smooth", "enabled", smooth))
    if video_track is not None:
        values.append(("decode", "video_track", video_track))
    plan = make_plan(registry, chosen.with_values(values) if values else chosen)
    return dataclasses.replace(plan, pinned=frozenset(pinned | {f"{role}.{key}" for role, key, _ in values}))
