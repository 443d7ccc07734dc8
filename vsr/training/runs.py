"""A training run's folder: what it was started with, how it ended, and what a failure leaves of it.

``run.json`` holds the data folder, the name to export under, the starting
model and the VGG19 weights; ``vsr train`` adds the evaluation when it ends.
The trainer writes ``recipe.json``, ``checkpoint.npz``, ``logs/`` and
``tensorflow.log`` beside it (:mod:`vsr.training.trainer`).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vsr.errors import Interrupted, UsageError, VsrError, shown
from vsr.files import write_atomic
from vsr.training.trainer import Recipe

CHECKPOINT = "checkpoint.npz"


@dataclass
class TrainingRun:
    """One run folder and what the run was started with.

    ``fresh``: started now (a failure before the first checkpoint removes the folder).
    """

    dir: Path
    recipe: Recipe
    data: Path
    name: str
    init: str | None
    vgg: str | None
    fresh: bool
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def start(
        cls,
        data: Path,
        recipe: str,
        overrides: dict[str, Any],
        run: Path | None,
        name: str | None,
        init: str | None,
        vgg: str | None,
    ) -> TrainingRun:
        """A new run folder (default ``runs/RECIPE-DATE``), refused where one already holds a run."""
        chosen = Recipe.load(recipe, overrides)
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        run_dir = run or Path("runs") / f"{chosen.name}-{stamp}"
        if (run_dir / CHECKPOINT).exists():
            raise UsageError(f"{shown(run_dir)} already holds a run; use --resume {shown(run_dir)}")
        name = name or run_dir.name.lower()
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise VsrError(f"{shown(run_dir)}: cannot create the run folder: {exc.strerror or exc}") from None
        meta = {"data": str(data.resolve()), "name": name, "init": init, "vgg": vgg}
        run_ = cls(run_dir, chosen, data, name, init, vgg, fresh=True, meta=meta)
        run_.record()
        return run_

    @classmethod
    def open(cls, run_dir: Path, overrides: dict[str, Any], evaluating: bool = False) -> TrainingRun:
        """An existing run folder, to resume or evaluate; ``overrides`` win over its recipe."""
        try:
            meta = json.loads((run_dir / "run.json").read_text())
            saved = json.loads((run_dir / "recipe.json").read_text())
        except (OSError, ValueError):
            raise VsrError(f"{shown(run_dir)}: not a vsr training run (run.json/recipe.json missing)") from None
        given = {k: v for k, v in overrides.items() if v is not None}
        chosen = Recipe.from_dict({**saved, **given}, f"the recipe of {shown(run_dir)}")
        if evaluating and not (run_dir / CHECKPOINT).is_file():
            raise VsrError(f"{shown(run_dir)}: no {CHECKPOINT} to evaluate")
        return cls(run_dir, chosen, Path(meta["data"]), meta["name"], meta.get("init"), meta.get("vgg"), False, meta)

    def record(self, **more: Any) -> None:
        """Write ``run.json`` with what the run was started with, and ``more`` (the evaluation, say)."""
        self.meta.update(more)
        write_atomic(self.dir / "run.json", json.dumps(self.meta, indent=2).encode())

    def failure(self, exc: Exception) -> Exception:
        """What a failure of the run means, as one line; a fresh run that saved nothing leaves no folder.

        TensorFlow wraps what happens inside its graphs (``StagingError``): an interruption comes back as
        text, and an undecodable training image names no file, so the data is read again to find it.
        """
        text = str(exc)
        interrupted = exc if isinstance(exc, Interrupted) else None
        if interrupted is None and (found := re.search(r"interrupted by (SIG[A-Z]+)", text)):
            interrupted = Interrupted(found.group(1))
        if self.fresh and not (self.dir / CHECKPOINT).exists():
            shutil.rmtree(self.dir, ignore_errors=True)
            kept = "nothing was trained yet; the run folder is removed"
        else:
            kept = f"the run folder keeps its last checkpoint (resume with: vsr train --resume {shown(self.dir)})"
        if interrupted is not None:
            return Interrupted(interrupted.signal_name, kept)
        if isinstance(exc, VsrError):
            return exc
        if type(exc).__name__ == "InvalidArgumentError" and ("Png" in text or "decode" in text.lower()):
            culprit = undecodable(self.data) or self.data
            return VsrError(f"{shown(culprit)}: a training image cannot be decoded; remove it or extract again")
        return exc


def undecodable(data: Path) -> Path | None:
    """The first PNG under ``data`` that does not decode."""
    from vsr.media import read_png

    for path in sorted(data.rglob("*.png")):
        try:
            read_png(path)
        except VsrError:
            return path
    return None
