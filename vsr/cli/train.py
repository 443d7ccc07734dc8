"""``vsr extract`` (training pairs from videos) and ``vsr train`` (ESRGAN on them)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from vsr.errors import UsageError, VsrError

log = logging.getLogger("vsr")


def extract(
    paths: Annotated[list[Path], typer.Argument(help="Videos, then the output folder (last).", show_default=False)],
    every: Annotated[int, typer.Option(help="Keep one frame in this many.", min=1)] = 12,
    max_per_video: Annotated[int, typer.Option(help="At most this many pairs per video (0: no limit).", min=0)] = 0,
    per_scene: Annotated[int, typer.Option(help="At most this many pairs per scene (0: no limit).", min=0)] = 0,
    min_change: Annotated[
        float, typer.Option(help="Skip near-duplicates: mean change to the last pair, levels.")
    ] = 1.0,
    crop: Annotated[int, typer.Option(help="Random HR crop of this side, a multiple of 4 (0: whole frames).")] = 0,
    max_side: Annotated[int, typer.Option(help="Crop larger frames to this side (0: no limit).")] = 0,
    degrade: Annotated[
        bool, typer.Option("--degrade/--clean", help="Blur, noise and JPEG on the LR side, or plain area downscale.")
    ] = True,
    seed: Annotated[int, typer.Option(help="Seed of every random choice.")] = 0,
) -> None:
    """Write training pairs OUT/hr/NAME.png and OUT/lr/NAME.png (4x smaller) plus OUT/manifest.json."""
    from vsr.degrade import Degradation
    from vsr.extract import ExtractOptions
    from vsr.extract import extract as run_extract
    from vsr.media import check_readable

    if len(paths) < 2:
        raise UsageError("give one or more videos and then the output folder")
    *videos, out_dir = paths
    for video in videos:
        check_readable(video)
    opts = ExtractOptions(
        every=every,
        max_per_video=max_per_video,
        per_scene=per_scene,
        min_change=min_change,
        crop=crop,
        max_side=max_side,
        seed=seed,
        degradation=Degradation(enabled=degrade),
    )
    with _Progress("pairs", None) as update:
        manifest = run_extract(videos, out_dir, opts, on_pair=lambda n: update(n, {}))
    log.info("wrote %d pairs to %s (manifest.json lists them)", len(manifest["pairs"]), out_dir)


class _Progress:
    """A rich progress bar on a terminal; otherwise a log line now and then."""

    def __init__(self, what: str, total: int | None, every: int = 0, done: int = 0) -> None:
        self.what, self.total, self.every, self.done = what, total, every, done
        self.bar: Progress | None = None
        self.start = time.perf_counter()

    def __enter__(self) -> Any:
        if sys.stderr.isatty():
            self.bar = Progress(
                TextColumn(self.what),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                transient=True,
            )
            self.bar.start()
            self.task = self.bar.add_task(self.what, total=self.total, completed=self.done, info="")

        def update(count: int, values: dict[str, float]) -> None:
            rate = (count - self.done) / max(time.perf_counter() - self.start, 1e-9)
            info = f"{rate:.2f}/s " + " ".join(f"{k}={v:.4g}" for k, v in list(values.items())[:3])
            if self.bar is not None:
                self.bar.update(self.task, completed=count, info=info)
            elif self.every and count % self.every == 0:
                total = f"/{self.total}" if self.total else ""
                log.info("%s %d%s, %s", self.what, count, total, info)

        return update

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


def train(
    data: Annotated[
        Path | None, typer.Argument(help="Folder with hr/ (and lr/) PNGs, e.g. from `vsr extract`.")
    ] = None,
    recipe: Annotated[str, typer.Option(help="Recipe: esrgan (the paper's), tiny, or a .toml file.")] = "esrgan",
    run: Annotated[Path | None, typer.Option(help="Run folder (default: runs/RECIPE-DATE).")] = None,
    resume: Annotated[Path | None, typer.Option(help="Continue the run in this folder from its checkpoint.")] = None,
    name: Annotated[str | None, typer.Option(help="Name of the exported model (default: the run folder's).")] = None,
    init: Annotated[str | None, typer.Option(help="Start from a model: a registered name or a .pth file.")] = None,
    vgg_weights: Annotated[
        Path | None, typer.Option(help="VGG19 ImageNet weights file (no-top .h5), for offline machines.")
    ] = None,
    random_vgg_weights_for_tests: Annotated[
        bool, typer.Option(help="Random VGG19 weights: the perceptual loss means nothing. For tests only.")
    ] = False,
    psnr_steps: Annotated[int | None, typer.Option(help="Override the recipe's stage-1 steps.")] = None,
    gan_steps: Annotated[int | None, typer.Option(help="Override the recipe's stage-2 steps.")] = None,
    batch: Annotated[int | None, typer.Option(help="Override the recipe's batch size.")] = None,
    seed: Annotated[int | None, typer.Option(help="Override the recipe's seed.")] = None,
    checkpoint_every: Annotated[int | None, typer.Option(help="Override: checkpoint every N steps.")] = None,
) -> None:
    """Train ESRGAN (PSNR stage, then GAN stage) and add the result to `vsr models`."""
    from vsr.backend import quiet_native_stderr
    from vsr.models.store import check_name, save_model
    from vsr.plugins import load_registry
    from vsr.training.trainer import Recipe, Trainer

    overrides = {"psnr_steps": psnr_steps, "gan_steps": gan_steps, "batch": batch, "seed": seed}
    overrides["checkpoint_every"] = checkpoint_every
    if resume is not None:
        run_dir = resume
        try:
            meta = json.loads((run_dir / "run.json").read_text())
            saved = json.loads((run_dir / "recipe.json").read_text())
        except (OSError, ValueError):
            raise VsrError(f"{run_dir}: not a vsr training run (run.json/recipe.json missing)") from None
        chosen = Recipe.from_dict({**saved, **{k: v for k, v in overrides.items() if v is not None}}, str(run_dir))
        data = Path(meta["data"])
        name, init, vgg = meta["name"], meta.get("init"), meta.get("vgg")
    else:
        if data is None:
            raise UsageError("give the training data folder (or --resume RUN)")
        chosen = Recipe.load(recipe, overrides)
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        run_dir = run or Path("runs") / f"{chosen.name}-{stamp}"
        if (run_dir / "checkpoint.npz").exists():
            raise UsageError(f"{run_dir} already holds a run; use --resume {run_dir}")
        name = name or run_dir.name.lower()
        vgg = None if random_vgg_weights_for_tests else str(vgg_weights) if vgg_weights else "imagenet"
        run_dir.mkdir(parents=True, exist_ok=True)
        meta = {"data": str(data.resolve()), "name": name, "init": init, "vgg": vgg}
        (run_dir / "run.json").write_text(json.dumps(meta, indent=2))
    registry = load_registry()
    taken = {n for n, item in registry.models.items.items() if item.plugin != "imported"}
    check_name(name, taken, replace=True)
    start_from = None
    if init is not None:
        from vsr.models.store import load_converted, resolve_model

        start_from, _ = load_converted(resolve_model(registry, init))
    if chosen.gan_steps > 0 and vgg is None:
        log.warning("VGG19 has random weights (--random-vgg-weights-for-tests): the perceptual loss is meaningless")
    with quiet_native_stderr():
        trainer = Trainer(chosen, data, run_dir, vgg_weights=vgg, init=start_from)
    total = chosen.psnr_steps + chosen.gan_steps
    with _Progress("training steps", total, every=chosen.log_every, done=trainer.step) as update:
        trainer.run(on_step=update)
    sidecar = save_model(
        name,
        trainer.export(),
        source_file=str(run_dir.resolve()),
        source_format="vsr train",
        description=f"trained by vsr train ({chosen.name} recipe, {total} steps) on {data}",
        licence="yours (trained by vsr on your data)",
    )
    log.info("trained %s (%d steps); use it with: vsr upscale VIDEO --model %s", sidecar["name"], total, name)
