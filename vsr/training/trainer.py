"""ESRGAN training: a PSNR (L1) stage, then the GAN stage; checkpoints, resume, TensorBoard, evaluation, export.

The generator is one of vsr's Keras networks (RRDBNet at x4, x2 or x1, or
the compact SRVGGNetCompact when fine-tuning ``realesr-animevideov3``), so a
trained model drops straight into ``vsr upscale --model``. Stage 2 follows
ESRGAN: generator loss = perceptual (VGG19 conv5_4 before activation) +
5e-3 relativistic-average GAN + 1e-2 L1; the VGG-style discriminator learns
with the relativistic loss.

An exponential moving average of the generator's weights is kept with a
warm-up (decay ``min(ema_decay, (1 + t) / (10 + t))`` after ``t`` updates of the
stage), so it follows the generator early instead of holding on to the
random initialisation. The GAN stage starts the generator from whichever of
the PSNR stage's EMA and generator scored better on the held-out pairs (as
ESRGAN starts it from the PSNR model), and restarts the EMA from there. At
the end both are scored on the held-out pairs next to bicubic and the
starting model, and the better one is exported (for the GAN stage the EMA,
unless it is clearly worse): see :mod:`vsr.training.evaluate`.

A run folder (:mod:`vsr.training.runs`) holds ``recipe.json`` (the recipe it
started with), ``checkpoint.npz`` (step, every network's weights, every
optimizer's state, the EMA, each keyed by the variable's path: layer name and
weight name, never position), written atomically every ``checkpoint_every``
steps, at the end of each stage and on SIGINT/SIGTERM; and ``logs/`` for
TensorBoard.

Keras's own callbacks (``TensorBoard``, ``BackupAndRestore``) hook into
``Model.fit``. This loop is not one ``fit``: two stages, three networks, an
EMA and three optimizers stepped by hand under a distribution strategy. So it
writes TensorBoard's summaries itself (``tf.summary``, the same event files)
and keeps one checkpoint of everything, where ``BackupAndRestore`` would keep
the one model ``fit`` trains.
"""

from __future__ import annotations

import functools
import io
import json
import logging
import time
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vsr.degrade import Degradation
from vsr.errors import Interrupted, UsageError, VsrError
from vsr.files import write_atomic
from vsr.models.build import PRECISION_POLICIES
from vsr.models.converted import ConvertedModel
from vsr.options import parse_options
from vsr.training.data import batches, find_pairs, validation_set, validation_side
from vsr.training.evaluate import Score, bicubic, choose, predict, score

log = logging.getLogger("vsr")
RECIPES = Path(__file__).parent / "recipes"


@dataclass
class Recipe:
    """Everything a training run needs besides its data (TOML tables flatten into these fields)."""

    name: str = "esrgan"
    # generator (rrdbnet: ESRGAN's RRDBNet; srvgg: the compact video model) and discriminator sizes;
    # --init takes all of these from the model it starts from
    arch: str = "rrdbnet"
    scale: int = 4
    num_feat: int = 64
    num_block: int = 23
    num_grow_ch: int = 32
    num_conv: int = 16
    d_num_feat: int = 64
    # float32, bfloat16 (mixed, for CPUs with native bf16), float16 (mixed with loss scaling, GPUs) or auto
    precision: str = "float32"
    # data
    patch: int = 128
    batch: int = 16
    val_fraction: float = 0.05
    degradation: Degradation = field(default_factory=lambda: Degradation(enabled=False))
    # stage 1: PSNR-oriented
    psnr_steps: int = 1_000_000
    psnr_lr: float = 2e-4
    psnr_milestones: list[int] = field(default_factory=lambda: [200_000, 400_000, 600_000, 800_000])
    # stage 2: GAN
    gan_steps: int = 400_000
    gan_lr: float = 1e-4
    gan_milestones: list[int] = field(default_factory=lambda: [50_000, 100_000, 200_000, 300_000])
    gamma: float = 0.5
    beta1: float = 0.9
    beta2: float = 0.99
    perceptual_weight: float = 1.0
    perceptual_criterion: str = "l1"
    gan_weight: float = 5e-3
    l1_weight: float = 1e-2
    ema_decay: float = 0.999
    # bookkeeping
    seed: int = 0
    checkpoint_every: int = 5000
    log_every: int = 100
    val_every: int = 5000

    @classmethod
    def load(cls, source: str | Path, overrides: dict[str, Any] | None = None) -> Recipe:
        """A built-in recipe by name (``esrgan``, ``tiny``) or a TOML file; ``overrides`` win."""
        path = Path(source)
        if not path.suffix:
            path = RECIPES / f"{source}.toml"
            if not path.is_file():
                known = ", ".join(sorted(p.stem for p in RECIPES.glob("*.toml")))
                raise UsageError(f"unknown recipe {source!r} (known: {known}, or a .toml file)")
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise UsageError(f"recipe {path}: {exc}") from None
        flat: dict[str, Any] = {}
        for key, value in data.items():
            if isinstance(value, dict) and key != "degradation":
                flat.update(value)
            else:
                flat[key] = value
        flat.update({k: v for k, v in (overrides or {}).items() if v is not None})
        return cls.from_dict(flat, f"recipe {path}")

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "recipe") -> Recipe:
        """A recipe from a mapping (a TOML file's, or a run's ``recipe.json``), validated as stage options are
        (:func:`vsr.options.parse_options`: unknown keys and wrong types refused, naming what is allowed)."""
        return parse_options(cls, data, where)

    def validate(self) -> str | None:
        """What the field types cannot say (called by :func:`vsr.options.parse_options`)."""
        if self.patch not in (128, 256):
            return "patch must be 128 or 256 (the discriminator's input)"
        if self.arch not in ("rrdbnet", "srvgg") or self.scale not in (1, 2, 4):
            return "arch must be rrdbnet or srvgg, scale 1, 2 or 4"
        if self.precision not in ("auto", *PRECISION_POLICIES):
            return f"precision must be auto, {', '.join(PRECISION_POLICIES)}"
        return None


def network_config(recipe: Recipe, init: Any = None) -> tuple[str, dict[str, int]]:
    """The generator's architecture and full config: the starting model's, or the recipe's."""
    if init is not None:
        if init.arch not in ("rrdbnet", "srvgg"):
            raise UsageError(f"--init: cannot fine-tune a {init.arch} model")
        return init.arch, {k: int(v) for k, v in init.config.items()}
    if recipe.arch == "srvgg":
        config = {"num_feat": recipe.num_feat, "num_conv": recipe.num_conv, "upscale": recipe.scale}
    else:
        config = {
            "num_feat": recipe.num_feat,
            "num_block": recipe.num_block,
            "num_grow_ch": recipe.num_grow_ch,
            "scale": recipe.scale,
        }
    return recipe.arch, {"num_in_ch": 3, "num_out_ch": 3, **config}


def training_precision(recipe: Recipe) -> str:
    """The recipe's precision; ``auto`` as the upscaler resolves it (bf16 on native-bf16 CPUs, fp16 on GPUs)."""
    from vsr.device import default_precision

    return default_precision() if recipe.precision == "auto" else recipe.precision


class Trainer:
    """Builds the networks and runs (or resumes) a training run in ``run_dir``.

    Args:
        recipe: sizes, steps, learning rates, loss weights.
        data_dir: a folder with ``hr/`` (and ``lr/``) PNGs.
        run_dir: checkpoints, logs and the recipe of this run.
        vgg_weights: ``"imagenet"``, a weights file, or ``None`` (random: tests only).
        init: a converted model to start the generator from (fine-tuning): an RRDBNet at any scale, or
            a compact SRVGGNet; the data must be pairs at its scale.
        init_name: what to call the starting model in the evaluation table.
    """

    def __init__(
        self,
        recipe: Recipe,
        data_dir: Path,
        run_dir: Path,
        vgg_weights: str | Path | None = "imagenet",
        init: ConvertedModel | None = None,
        init_name: str | None = None,
    ) -> None:
        import keras
        import tensorflow as tf

        from vsr.models.build import network_class
        from vsr.training.discriminator import vgg_style_discriminator
        from vsr.training.losses import vgg19_preactivation

        self.recipe = recipe
        self.run_dir = run_dir
        self.arch, self.config = network_config(recipe, init)
        self.scale = ConvertedModel(self.arch, self.config, {}).scale
        self.init, self.init_name = init, init_name or "start"
        self.precision = training_precision(recipe)
        policy = PRECISION_POLICIES[self.precision]
        self.pairs = find_pairs(data_dir, recipe.patch, recipe.val_fraction, recipe.seed, self.scale)
        gpus = tf.config.list_logical_devices("GPU")
        self.strategy = tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
        keras.utils.set_random_seed(recipe.seed)
        network = network_class(self.arch)
        with self.strategy.scope():
            self.generator = network(**self.config, dtype=policy, name="generator")
            self.ema = network(**self.config, dtype=policy, name="generator_ema")
            multiple = self.generator.input_multiple
            if recipe.patch % (self.scale * multiple):
                raise UsageError(f"patch {recipe.patch} does not fit a x{self.scale} {self.arch} network")
            self.discriminator = vgg_style_discriminator(3, recipe.d_num_feat, recipe.patch, dtype=policy)
            self.vgg = vgg19_preactivation(vgg_weights) if recipe.gan_steps > 0 else None
            #: the perceptual distance means something only with real VGG weights
            self.perceptual_vgg = self.vgg if vgg_weights is not None else None
            if init is not None:
                for name, weights in init.weights.items():
                    self.generator.get_layer(name).set_weights(weights)
            self.ema.set_weights(self.generator.get_weights())
            self.opt_psnr = self._adam(recipe.psnr_lr, recipe.psnr_milestones, "opt_psnr")
            self.opt_g = self._adam(recipe.gan_lr, recipe.gan_milestones, "opt_g")
            self.opt_d = self._adam(recipe.gan_lr, recipe.gan_milestones, "opt_d")
            for opt, model in (
                (self.opt_psnr, self.generator),
                (self.opt_g, self.generator),
                (self.opt_d, self.discriminator),
            ):
                opt.build(model.trainable_variables)
        self.val_side = validation_side(self.pairs, recipe.patch, multiple)
        self.step = 0
        self.data_wait = 0.0  # seconds spent waiting for batches, and in whole steps, in this process
        self.step_time = 0.0
        self._psnr_step = tf.function(self._psnr_step_fn)
        self._gan_step = tf.function(self._gan_step_fn)

    def _adam(self, lr: float, milestones: list[int], name: str) -> Any:
        import keras

        values = [lr * self.recipe.gamma**i for i in range(len(milestones) + 1)]
        schedule = keras.optimizers.schedules.PiecewiseConstantDecay(milestones, values) if milestones else lr
        # named, so its variables' paths (a checkpoint's keys) are the same in every process
        adam = keras.optimizers.Adam(
            schedule, beta_1=self.recipe.beta1, beta_2=self.recipe.beta2, epsilon=1e-8, name=name
        )
        # float16's range is too small for small gradients: scale the loss up, and the gradients back down
        return keras.optimizers.LossScaleOptimizer(adam, name=f"{name}_scaled") if self.precision == "float16" else adam

    # --- one step of each stage ---------------------------------------------------------------------

    def ema_decay(self) -> float:
        """The EMA's decay for the coming update: warmed up over the first steps of each stage."""
        r = self.recipe
        t = self.step - r.psnr_steps if self.step >= r.psnr_steps else self.step
        return min(r.ema_decay, (1.0 + t) / (10.0 + t))

    def _update_ema(self, decay: Any) -> None:
        for ema_var, var in zip(self.ema.weights, self.generator.weights, strict=True):
            ema_var.assign(decay * ema_var + (1.0 - decay) * var)

    def _scaled(self, opt: Any, loss: Any) -> Any:
        """The loss to differentiate: split over replicas, and scaled up under float16."""
        loss = loss / self.strategy.num_replicas_in_sync
        return opt.scale_loss(loss) if self.precision == "float16" else loss

    def _psnr_step_fn(self, lr: Any, hr: Any, decay: Any) -> dict[str, Any]:
        import tensorflow as tf
        from keras import ops

        with tf.GradientTape() as tape:
            sr = ops.cast(self.generator(lr, training=True), "float32")
            l1 = ops.mean(ops.abs(sr - hr))
            scaled = self._scaled(self.opt_psnr, l1)
        grads = tape.gradient(scaled, self.generator.trainable_variables)
        self.opt_psnr.apply_gradients(zip(grads, self.generator.trainable_variables, strict=True))
        self._update_ema(decay)
        return {"l1": l1}

    def _gan_step_fn(self, lr: Any, hr: Any, decay: Any) -> dict[str, Any]:
        import tensorflow as tf
        from keras import ops

        from vsr.training.losses import perceptual_loss, relativistic_d_loss, relativistic_g_loss

        r = self.recipe

        def logits(images: Any, training: bool) -> Any:
            return ops.cast(self.discriminator(images, training=training), "float32")

        with tf.GradientTape() as tape:
            sr = ops.cast(self.generator(lr, training=True), "float32")
            real_logits = ops.stop_gradient(logits(hr, False))
            fake_logits = logits(sr, False)
            l_percep = perceptual_loss(self.vgg, sr, hr, r.perceptual_criterion)
            l_gan = relativistic_g_loss(real_logits, fake_logits)
            l_pix = ops.mean(ops.abs(sr - hr))
            l_g = r.perceptual_weight * l_percep + r.gan_weight * l_gan + r.l1_weight * l_pix
            scaled = self._scaled(self.opt_g, l_g)  # inside the tape, or it has no gradient
        grads = tape.gradient(scaled, self.generator.trainable_variables)
        self.opt_g.apply_gradients(zip(grads, self.generator.trainable_variables, strict=True))
        self._update_ema(decay)
        fake = ops.stop_gradient(sr)
        with tf.GradientTape() as tape:
            real_logits = logits(hr, True)
            fake_logits = logits(fake, True)
            l_d = relativistic_d_loss(real_logits, fake_logits)
            scaled = self._scaled(self.opt_d, l_d)
        grads = tape.gradient(scaled, self.discriminator.trainable_variables)
        self.opt_d.apply_gradients(zip(grads, self.discriminator.trainable_variables, strict=True))
        return {
            "g_total": l_g,
            "g_perceptual": l_percep,
            "g_gan": l_gan,
            "g_l1": l_pix,
            "d_loss": l_d,
            "d_real": ops.mean(real_logits),
            "d_fake": ops.mean(fake_logits),
        }

    def train_step(self, lr: Any, hr: Any) -> dict[str, float]:
        """One step of the stage that ``self.step`` is in; returns the losses."""
        import tensorflow as tf

        fn = self._psnr_step if self.step < self.recipe.psnr_steps else self._gan_step
        decay = tf.constant(self.ema_decay(), tf.float32)
        per_replica = self.strategy.run(fn, args=(lr, hr, decay))
        reduced = {k: self.strategy.reduce("MEAN", v, axis=None) for k, v in per_replica.items()}
        self.step += 1
        return {k: float(v) for k, v in reduced.items()}

    # --- checkpoints ----------------------------------------------------------------------------------

    def _variables(self) -> dict[str, Any]:
        """Every variable a checkpoint holds, by name: the network's or optimizer's role, then the variable's
        path (layer name and weight name: ``g/conv_first/kernel``, ``opt_g/opt_g/conv_first_kernel_momentum``),
        as the model code maps weights, so a change in layer order never puts weights in the wrong place."""
        named: dict[str, Any] = {}
        owners: list[tuple[str, Any]] = [("g", self.generator), ("ema", self.ema), ("d", self.discriminator)]
        for prefix, model in owners:
            named.update({f"{prefix}/{w.path}": w for w in model.weights})
        for prefix, opt in (("opt_psnr", self.opt_psnr), ("opt_g", self.opt_g), ("opt_d", self.opt_d)):
            named.update({f"{prefix}/{v.path}": v for v in opt.variables})
        return named

    def _positional(self) -> dict[str, Any]:
        """The same variables under the keys checkpoints of vsr 0.1 used (``g/0``, ``opt_g/3``): by position."""
        keyed: dict[str, Any] = {}
        for prefix, owner in (("g", self.generator), ("ema", self.ema), ("d", self.discriminator)):
            keyed.update({f"{prefix}/{i}": w for i, w in enumerate(owner.weights)})
        for prefix, opt in (("opt_psnr", self.opt_psnr), ("opt_g", self.opt_g), ("opt_d", self.opt_d)):
            keyed.update({f"{prefix}/{i}": v for i, v in enumerate(opt.variables)})
        return keyed

    def save(self) -> Path:
        """Write ``checkpoint.npz`` atomically (a kill mid-write leaves the previous one), weights by name."""
        arrays = {"step": np.array(self.step), **{k: np.asarray(v.numpy()) for k, v in self._variables().items()}}
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        path = self.run_dir / "checkpoint.npz"
        write_atomic(path, buffer.getvalue())
        return path

    def restore(self) -> bool:
        """Load ``checkpoint.npz`` if there is one; returns whether it did."""
        path = self.run_dir / "checkpoint.npz"
        if not path.is_file():
            return False
        try:
            with np.load(path, allow_pickle=False) as data:
                state = {k: data[k] for k in data.files}
        except (OSError, ValueError) as exc:
            raise VsrError(f"{path}: damaged checkpoint ({exc})") from None
        variables = self._variables()
        if "g/0" in state and not any(key in state for key in variables):
            log.info("%s: a checkpoint of an older vsr, read by position", path)
            variables = self._positional()
        missing = sorted(set(variables) - set(state))
        if missing:
            raise VsrError(f"{path}: does not fit this recipe's networks (no {', '.join(missing[:3])})")
        try:
            for key, variable in variables.items():
                variable.assign(state[key])
        except ValueError as exc:
            reason = str(exc).split("Target variable")[0].strip()[:300]
            raise VsrError(f"{path}: does not fit this recipe's networks ({reason})") from None
        self.step = int(state["step"])
        return True

    # --- the loop ---------------------------------------------------------------------------------------

    @functools.cached_property
    def held_out(self) -> tuple[np.ndarray, np.ndarray]:
        """The held-out crops (LR, HR) every score is taken on (read once)."""
        r = self.recipe
        return validation_set(self.pairs, self.val_side, r.seed, r.degradation)

    def score_live(self) -> dict[str, Score]:
        """Held-out scores of the EMA and the generator as they are now (in the training precision)."""
        lr, hr = self.held_out
        return {
            which: score(which, predict(network, lr), hr, self.scale, self.perceptual_vgg)
            for which, network in (("ema", self.ema), ("generator", self.generator))
        }

    def _start_gan_stage(self) -> None:
        """The GAN stage starts from the better PSNR-stage network, and the EMA restarts from it."""
        if len(self.held_out[1]):
            scores = self.score_live()
            best = self.ema if scores["ema"].psnr >= scores["generator"].psnr else self.generator
        else:
            best = self.ema
        log.info("GAN stage starts from the PSNR stage's %s", "EMA" if best is self.ema else "generator")
        weights = best.get_weights()
        self.generator.set_weights(weights)
        self.ema.set_weights(weights)

    @functools.cached_property
    def baselines(self) -> list[Score]:
        """Bicubic and (when fine-tuning) the starting model in float32, on the held-out crops (scored once)."""
        from vsr.models.build import build_network

        lr, hr = self.held_out
        rows = [score("bicubic", bicubic(lr, self.scale), hr, self.scale, self.perceptual_vgg)]
        if self.init is not None:
            start = build_network(self.init)
            rows.append(score(f"start ({self.init_name})", predict(start, lr), hr, self.scale, self.perceptual_vgg))
        return rows

    def _log_validation(self) -> None:
        """The held-out scores of every row, and a few LR/SR/HR crops, into the active summary writer."""
        import tensorflow as tf

        rows = [*self.baselines, *self.score_live().values()]
        for row in rows:
            label = row.model.split(" ")[0]
            tf.summary.scalar(f"val/psnr_{label}", row.psnr)
            tf.summary.scalar(f"val/ssim_{label}", row.ssim)
            if row.perceptual is not None:
                tf.summary.scalar(f"val/perceptual_{label}", row.perceptual)
        lr, hr = self.held_out[0][:4], self.held_out[1][:4]
        sr = np.clip(predict(self.ema, lr), 0, 1)
        up = np.repeat(np.repeat(lr, self.scale, axis=1), self.scale, axis=2)
        tf.summary.image("val/lr_sr_hr", np.concatenate([up, sr, hr], axis=2), max_outputs=4)

    def run(self, on_step: Callable[[int, dict[str, float]], None] | None = None) -> None:
        """Train until the recipe's last step, resuming from ``checkpoint.npz`` if present."""
        import tensorflow as tf

        r = self.recipe
        total = r.psnr_steps + r.gan_steps
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(self.run_dir / "recipe.json", json.dumps(asdict(r), indent=2, default=list).encode())
        if self.restore():
            log.info("resuming %s at step %d of %d", self.run_dir, self.step, total)
        dataset = batches(self.pairs, r.patch, r.batch, r.seed, self.step, r.degradation)
        data = iter(self.strategy.experimental_distribute_dataset(dataset))
        writer = tf.summary.create_file_writer(str(self.run_dir / "logs"))
        try:
            while self.step < total:
                if self.step == r.psnr_steps and r.psnr_steps > 0:
                    self._start_gan_stage()
                began = time.perf_counter()
                lr, hr = next(data)
                fed = time.perf_counter()
                stage_end = self.step + 1 in (r.psnr_steps, total)
                losses = self.train_step(lr, hr)
                if not all(np.isfinite(v) for v in losses.values()):
                    raise VsrError(f"training diverged at step {self.step}: {losses}")
                self.data_wait += fed - began
                self.step_time += time.perf_counter() - began
                with writer.as_default(step=self.step):
                    if self.step % r.log_every == 0 or stage_end:
                        for key, value in losses.items():
                            tf.summary.scalar(f"loss/{key}", value)
                        tf.summary.scalar("perf/data_wait_fraction", self.data_wait_fraction)
                        tf.summary.scalar("ema/decay", self.ema_decay())
                    if (self.step % r.val_every == 0 or stage_end) and len(self.held_out[1]):
                        self._log_validation()
                if self.step % r.checkpoint_every == 0 or stage_end:
                    self.save()
                if on_step is not None:
                    on_step(self.step, losses)
        except Interrupted:
            self.save()
            log.info("checkpoint saved at step %d; resume with: vsr train --resume %s", self.step, self.run_dir)
            raise
        finally:
            writer.close()

    @property
    def data_wait_fraction(self) -> float:
        """The share of step time this process spent waiting for the input pipeline."""
        return self.data_wait / self.step_time if self.step_time else 0.0

    def evaluate(self) -> dict[str, Any]:
        """Score bicubic, the starting model, the EMA and the generator on the held-out pairs; pick the export.

        Networks are rebuilt in float32 from their weights, as ``vsr upscale`` runs them. Returns what
        ``run.json`` keeps under ``evaluation``: the rows, which network is exported and why.
        """
        from vsr.models.build import build_network
        from vsr.training.evaluate import as_json

        r = self.recipe
        val = self.held_out
        gan = self.step > r.psnr_steps
        if not len(val[1]):
            return {
                "pairs": 0,
                "rows": [],
                "exported": "ema",
                "why": "no held-out pairs (val_fraction 0 or a single image): the EMA, unscored",
            }
        rows = self.baselines
        trained = {}
        for which in ("ema", "generator"):
            network = build_network(self.export(which))
            trained[which] = score(which, predict(network, val[0]), val[1], self.scale, self.perceptual_vgg)
        exported, why = choose(trained["ema"], trained["generator"], gan)
        return {
            "pairs": len(val[1]),
            "held_out": [self.pairs.hr[i].name for i in self.pairs.val[: len(val[1])]],
            "crop": self.val_side,
            "border": self.scale,
            "step": self.step,
            "rows": as_json([*rows, trained["ema"], trained["generator"]]),
            "exported": exported,
            "why": why,
        }

    def export(self, which: str = "ema") -> ConvertedModel:
        """``"ema"`` or ``"generator"`` (``evaluate()["exported"]``) as a converted model, float32 weights by
        layer name, ready for the model store."""
        network = self.ema if which == "ema" else self.generator
        layers = [layer for layer in network.layers if layer.weights]
        weights = {layer.name: [np.asarray(w, np.float32) for w in layer.get_weights()] for layer in layers}
        return ConvertedModel(self.arch, dict(self.config), weights)
