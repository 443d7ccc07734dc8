"""``vsr extract`` (training pairs from videos) and ``vsr train`` (ESRGAN on them)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from vsr.cli.progress import Progress
from vsr.errors import UsageError
from vsr.extract import ExtractOptions

log = logging.getLogger("vsr")
#: The options' defaults, written once (vsr.extract imports no TensorFlow, so `vsr --help` stays fast).
_EXTRACT = ExtractOptions()


def extract(
    paths: Annotated[list[Path], typer.Argument(help="Videos, then the output folder (last).", show_default=False)],
    every: Annotated[int, typer.Option(help="Keep one frame in this many.", min=1)] = _EXTRACT.every,
    max_per_video: Annotated[
        int, typer.Option(help="At most this many pairs per video (0: no limit).", min=0)
    ] = _EXTRACT.max_per_video,
    per_scene: Annotated[
        int, typer.Option(help="At most this many pairs per scene (0: no limit).", min=0)
    ] = _EXTRACT.per_scene,
    min_change: Annotated[
        float, typer.Option(help="Skip near-duplicates: mean change to the last pair, levels.")
    ] = _EXTRACT.min_change,
    crop: Annotated[
        int, typer.Option(help="Random HR crop of this side, a multiple of --scale (0: whole).")
    ] = _EXTRACT.crop,
    max_side: Annotated[int, typer.Option(help="Crop larger frames to this side (0: no limit).")] = _EXTRACT.max_side,
    degrade: Annotated[
        bool, typer.Option("--degrade/--clean", help="Blur, noise and compression on the LR side, or plain downscale.")
    ] = _EXTRACT.degradation.enabled,
    codec: Annotated[
        bool,
        typer.Option(
            "--codec/--no-codec", help="Compress LR frames with x264/x265 in short GOPs (video artefacts), or JPEG."
        ),
    ] = _EXTRACT.degradation.codec_prob > 0,
    second_order: Annotated[
        bool, typer.Option("--second-order", help="Real-ESRGAN's second-order degradation instead of one round.")
    ] = _EXTRACT.degradation.second_order,
    scale: Annotated[int, typer.Option(help="HR over LR size: 4, or 2/1 to fine-tune x2/x1 models.")] = _EXTRACT.scale,
    seed: Annotated[int, typer.Option(help="Seed of every random choice.")] = _EXTRACT.seed,
) -> None:
    """Write training pairs OUT/hr/NAME.png and OUT/lr/NAME.png (--scale times smaller) plus OUT/manifest.json."""
    from vsr.degrade import Degradation
    from vsr.extract import VIDEO_CODEC_PROB
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
        degradation=Degradation(
            enabled=degrade, codec_prob=VIDEO_CODEC_PROB if codec else 0.0, second_order=second_order
        ),
        scale=scale,
    )
    with Progress("pairs") as progress:
        manifest = run_extract(videos, out_dir, opts, on_pair=progress.update)
    log.info("wrote %d pairs to %s (manifest.json lists them)", len(manifest["pairs"]), out_dir)


def train(
    data: Annotated[
        Path | None, typer.Argument(help="Folder with hr/ (and lr/) PNGs, e.g. from `vsr extract`.")
    ] = None,
    recipe: Annotated[str, typer.Option(help="Recipe: esrgan (the paper's), tiny, or a .toml file.")] = "esrgan",
    run: Annotated[Path | None, typer.Option(help="Run folder (default: runs/RECIPE-DATE).")] = None,
    resume: Annotated[Path | None, typer.Option(help="Continue the run in this folder from its checkpoint.")] = None,
    evaluate: Annotated[
        Path | None, typer.Option(help="Score a run's checkpoint on its held-out pairs (no training, no export).")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Name of the exported model (default: the run folder's).")] = None,
    init: Annotated[
        str | None, typer.Option(help="Start from a model (RRDBNet x4/x2/x1 or compact): a name or a model file.")
    ] = None,
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
    precision: Annotated[
        str | None, typer.Option(help="Override the recipe's precision: auto, float32, bfloat16, float16.")
    ] = None,
) -> None:
    """Train ESRGAN (PSNR stage, then GAN stage), say whether it beat bicubic and the start model, export it."""
    from vsr.backend import native_stderr_to
    from vsr.models.store import check_name, save_model
    from vsr.plugins import load_registry
    from vsr.training.runs import TrainingRun
    from vsr.training.trainer import Trainer

    overrides = {"psnr_steps": psnr_steps, "gan_steps": gan_steps, "batch": batch, "seed": seed}
    overrides |= {"checkpoint_every": checkpoint_every, "precision": precision}
    if resume is not None and evaluate is not None:
        raise UsageError("give --resume or --evaluate, not both")
    existing = resume or evaluate
    if existing is not None:
        training_run = TrainingRun.open(existing, overrides, evaluating=evaluate is not None)
    elif data is None:
        raise UsageError("give the training data folder (or --resume RUN)")
    else:
        vgg = None if random_vgg_weights_for_tests else str(vgg_weights) if vgg_weights else "imagenet"
        training_run = TrainingRun.start(data, recipe, overrides, run, name, init, vgg)
    chosen, run_dir, data, name, init, vgg = (
        training_run.recipe,
        training_run.dir,
        training_run.data,
        training_run.name,
        training_run.init,
        training_run.vgg,
    )
    registry = load_registry()
    taken = {n for n, item in registry.models.items.items() if item.plugin != "imported"}
    check_name(name, taken, replace=True)
    start_from = None
    if init is not None:
        from vsr.models.store import load_converted, resolve_model

        start_from, _ = load_converted(resolve_model(registry, init))
    if chosen.gan_steps > 0 and vgg is None:
        log.warning("VGG19 has random weights (--random-vgg-weights-for-tests): the perceptual loss is meaningless")
    total = chosen.psnr_steps + chosen.gan_steps
    # TensorFlow's native lines (oneDNN, grappler) go to the run folder, not the terminal (-v shows them)
    try:
        with native_stderr_to(run_dir / "tensorflow.log"):
            _quiet_python_warnings()
            trainer = Trainer(chosen, data, run_dir, vgg_weights=vgg, init=start_from, init_name=init)
            if evaluate is not None:
                trainer.restore()
            else:
                log.info(
                    "training a x%d %s in %s precision: %s", trainer.scale, trainer.arch, trainer.precision, run_dir
                )
                with Progress("training steps", total, every=chosen.log_every) as progress:
                    progress.plan(0, trainer.step)
                    trainer.run(on_step=progress.update)
            evaluation = trainer.evaluate()
    except Exception as exc:
        raise training_run.failure(exc) from None
    _report(evaluation, trainer.data_wait_fraction if evaluate is None else None, exporting=evaluate is None)
    if evaluate is None:
        training_run.record(evaluation=evaluation, data_wait_fraction=round(trainer.data_wait_fraction, 4))
    else:
        training_run.record(evaluation=evaluation)
    if evaluate is not None:
        return
    sidecar = save_model(
        name,
        trainer.export(evaluation["exported"]),
        source_file=str(run_dir.resolve()),
        source_format="vsr train",
        description=f"trained by vsr train ({chosen.name} recipe, {total} steps, {evaluation['exported']}) on {data}",
        licence="yours (trained by vsr on your data)",
    )
    log.info("trained %s (%d steps); use it with: vsr upscale VIDEO --model %s", sidecar["name"], total, name)


def _quiet_python_warnings() -> None:
    """TensorFlow's Python-side warnings (retracing, deprecations) only with -v."""
    import warnings

    if not log.isEnabledFor(logging.DEBUG):
        warnings.filterwarnings("ignore", module="tensorflow")
        warnings.filterwarnings("ignore", module="keras")
        logging.getLogger("tensorflow").setLevel(logging.ERROR)


def _report(evaluation: dict[str, Any], data_wait: float | None, exporting: bool) -> None:
    """The held-out table on stdout; which network is (or would be) exported, and why, on stderr."""
    from vsr.training.evaluate import Score, table

    rows = [Score(**row) for row in evaluation["rows"]]
    if rows:
        print(f"held-out pairs: {evaluation['pairs']} crops of {evaluation['crop']} px (border {evaluation['border']})")
        print(table(rows, evaluation["exported"]))
    network = "EMA" if evaluation["exported"] == "ema" else "generator"
    log.info("%s the %s: %s", "exporting" if exporting else "the one to export is", network, evaluation["why"])
    if data_wait is not None:
        log.info("input pipeline: %.1f %% of step time spent waiting for data", 100 * data_wait)
