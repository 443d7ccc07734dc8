"""ESRGAN training: a PSNR (L1) stage, then the GAN stage; checkpoints, resume, TensorBoard, export.

The generator is vsr's Keras RRDBNet, so a trained model drops straight into
``vsr upscale --model``. Stage 2 follows ESRGAN: generator loss =
perceptual (VGG19 conv5_4 before activation) + 5e-3 relativistic-average GAN
+ 1e-2 L1; the VGG-style discriminator learns with the relativistic loss;
an exponential moving average of the generator's weights (0.999) is what is
exported.

A run folder holds ``recipe.json`` (the recipe it started with),
``checkpoint.npz`` (step, every network's weights, every optimizer's state,
the EMA), written atomically every ``checkpoint_every`` steps, at the end of
each stage and on SIGINT/SIGTERM; and ``logs/`` for TensorBoard.
"""

from __future__ import annotations

import io
import json
import logging
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from vsr.degrade import Degradation
from vsr.errors import Interrupted, UsageError, VsrError
from vsr.files import write_atomic
from vsr.training.data import batches, find_pairs, validation_set

log = logging.getLogger("vsr")
RECIPES = Path(__file__).parent / "recipes"


@dataclass
class Recipe:
    """Everything a training run needs besides its data (TOML tables flatten into these fields)."""

    name: str = "esrgan"
    # generator (RRDBNet) and discriminator sizes
    num_feat: int = 64
    num_block: int = 23
    num_grow_ch: int = 32
    d_num_feat: int = 64
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
        return cls.from_dict(flat, str(path))

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "recipe") -> Recipe:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UsageError(f"{where}: unknown key {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        data = dict(data)
        if isinstance(data.get("degradation"), dict):
            spec = dict(data["degradation"])
            data["degradation"] = Degradation(**{k: tuple(v) if isinstance(v, list) else v for k, v in spec.items()})
        recipe = cls(**data)
        if recipe.patch % 32 or recipe.patch not in (128, 256):
            raise UsageError(f"{where}: patch must be 128 or 256 (the discriminator's input)")
        return recipe


class Trainer:
    """Builds the networks and runs (or resumes) a training run in ``run_dir``.

    Args:
        recipe: sizes, steps, learning rates, loss weights.
        data_dir: a folder with ``hr/`` (and ``lr/``) PNGs.
        run_dir: checkpoints, logs and the recipe of this run.
        vgg_weights: ``"imagenet"``, a weights file, or ``None`` (random: tests only).
        init: a converted model to start the generator from (fine-tuning).
    """

    def __init__(
        self,
        recipe: Recipe,
        data_dir: Path,
        run_dir: Path,
        vgg_weights: str | Path | None = "imagenet",
        init: Any = None,
    ) -> None:
        import keras
        import tensorflow as tf

        from vsr.models.rrdbnet import RRDBNet
        from vsr.training.discriminator import vgg_style_discriminator
        from vsr.training.losses import vgg19_preactivation

        self.recipe = recipe
        self.run_dir = run_dir
        self.pairs = find_pairs(data_dir, recipe.patch, recipe.val_fraction, recipe.seed)
        gpus = tf.config.list_logical_devices("GPU")
        self.strategy = tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
        keras.utils.set_random_seed(recipe.seed)
        config = (
            dict(init.config)
            if init is not None
            else {"num_feat": recipe.num_feat, "num_block": recipe.num_block, "num_grow_ch": recipe.num_grow_ch}
        )
        if init is not None and (init.arch != "rrdbnet" or init.scale != 4):
            raise UsageError("--init needs a x4 RRDBNet model (ESRGAN's generator)")
        with self.strategy.scope():
            self.generator = RRDBNet(**config, name="generator")
            self.ema = RRDBNet(**config, name="generator_ema")
            self.discriminator = vgg_style_discriminator(3, recipe.d_num_feat, recipe.patch)
            self.vgg = vgg19_preactivation(vgg_weights) if recipe.gan_steps > 0 else None
            if init is not None:
                for name, weights in init.weights.items():
                    self.generator.get_layer(name).set_weights(weights)
            self.ema.set_weights(self.generator.get_weights())
            self.opt_psnr = self._adam(recipe.psnr_lr, recipe.psnr_milestones)
            self.opt_g = self._adam(recipe.gan_lr, recipe.gan_milestones)
            self.opt_d = self._adam(recipe.gan_lr, recipe.gan_milestones)
            for opt, model in (
                (self.opt_psnr, self.generator),
                (self.opt_g, self.generator),
                (self.opt_d, self.discriminator),
            ):
                opt.build(model.trainable_variables)
        self.config = config
        self.step = 0
        self._psnr_step = tf.function(self._psnr_step_fn)
        self._gan_step = tf.function(self._gan_step_fn)

    def _adam(self, lr: float, milestones: list[int]) -> Any:
        import keras

        values = [lr * self.recipe.gamma**i for i in range(len(milestones) + 1)]
        schedule = keras.optimizers.schedules.PiecewiseConstantDecay(milestones, values) if milestones else lr
        return keras.optimizers.Adam(schedule, beta_1=self.recipe.beta1, beta_2=self.recipe.beta2, epsilon=1e-8)

    # --- one step of each stage ---------------------------------------------------------------------

    def _update_ema(self) -> None:
        decay = self.recipe.ema_decay
        for ema_var, var in zip(self.ema.weights, self.generator.weights, strict=True):
            ema_var.assign(decay * ema_var + (1.0 - decay) * var)

    def _psnr_step_fn(self, lr: Any, hr: Any) -> dict[str, Any]:
        import tensorflow as tf
        from keras import ops

        replicas = self.strategy.num_replicas_in_sync
        with tf.GradientTape() as tape:
            sr = self.generator(lr, training=True)
            l1 = ops.mean(ops.abs(sr - hr))
            scaled = l1 / replicas
        grads = tape.gradient(scaled, self.generator.trainable_variables)
        self.opt_psnr.apply_gradients(zip(grads, self.generator.trainable_variables, strict=True))
        self._update_ema()
        return {"l1": l1}

    def _gan_step_fn(self, lr: Any, hr: Any) -> dict[str, Any]:
        import tensorflow as tf
        from keras import ops

        from vsr.training.losses import perceptual_loss, relativistic_d_loss, relativistic_g_loss

        r = self.recipe
        replicas = self.strategy.num_replicas_in_sync
        with tf.GradientTape() as tape:
            sr = self.generator(lr, training=True)
            real_logits = ops.stop_gradient(self.discriminator(hr, training=False))
            fake_logits = self.discriminator(sr, training=False)
            l_percep = perceptual_loss(self.vgg, sr, hr, r.perceptual_criterion)
            l_gan = relativistic_g_loss(real_logits, fake_logits)
            l_pix = ops.mean(ops.abs(sr - hr))
            l_g = r.perceptual_weight * l_percep + r.gan_weight * l_gan + r.l1_weight * l_pix
            scaled = l_g / replicas  # inside the tape, or it has no gradient
        grads = tape.gradient(scaled, self.generator.trainable_variables)
        self.opt_g.apply_gradients(zip(grads, self.generator.trainable_variables, strict=True))
        self._update_ema()
        fake = ops.stop_gradient(sr)
        with tf.GradientTape() as tape:
            real_logits = self.discriminator(hr, training=True)
            fake_logits = self.discriminator(fake, training=True)
            l_d = relativistic_d_loss(real_logits, fake_logits)
            scaled = l_d / replicas
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
        fn = self._psnr_step if self.step < self.recipe.psnr_steps else self._gan_step
        per_replica = self.strategy.run(fn, args=(lr, hr))
        reduced = {k: self.strategy.reduce("MEAN", v, axis=None) for k, v in per_replica.items()}
        self.step += 1
        return {k: float(v) for k, v in reduced.items()}

    # --- checkpoints ----------------------------------------------------------------------------------

    def _state(self) -> dict[str, np.ndarray]:
        arrays: dict[str, np.ndarray] = {"step": np.array(self.step)}
        for prefix, model in (("g", self.generator), ("ema", self.ema), ("d", self.discriminator)):
            for i, w in enumerate(model.weights):
                arrays[f"{prefix}/{i}"] = np.asarray(w.numpy())
        for prefix, opt in (("opt_psnr", self.opt_psnr), ("opt_g", self.opt_g), ("opt_d", self.opt_d)):
            for i, v in enumerate(opt.variables):
                arrays[f"{prefix}/{i}"] = np.asarray(v.numpy())
        return arrays

    def save(self) -> Path:
        """Write ``checkpoint.npz`` atomically (a kill mid-write leaves the previous one)."""
        buffer = io.BytesIO()
        np.savez(buffer, **self._state())
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
        try:
            for prefix, model in (("g", self.generator), ("ema", self.ema), ("d", self.discriminator)):
                for i, w in enumerate(model.weights):
                    w.assign(state[f"{prefix}/{i}"])
            for prefix, opt in (("opt_psnr", self.opt_psnr), ("opt_g", self.opt_g), ("opt_d", self.opt_d)):
                for i, v in enumerate(opt.variables):
                    v.assign(state[f"{prefix}/{i}"])
        except (KeyError, ValueError) as exc:
            raise VsrError(f"{path}: does not fit this recipe's networks ({exc})") from None
        self.step = int(state["step"])
        return True

    # --- the loop ---------------------------------------------------------------------------------------

    def validate(self, val: tuple[np.ndarray, np.ndarray]) -> float | None:
        """PSNR (dB) of the EMA generator on the held-out patches."""
        lr, hr = val
        if not len(hr):
            return None
        sr = np.clip(np.asarray(self.ema.predict_on_batch(lr)), 0.0, 1.0)
        mse = float(np.mean((np.round(sr * 255) - np.round(hr * 255)) ** 2))
        return 99.0 if mse == 0 else 10 * float(np.log10(255.0**2 / mse))

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
        val = validation_set(self.pairs, r.patch, r.seed, r.degradation)
        writer = tf.summary.create_file_writer(str(self.run_dir / "logs"))
        try:
            while self.step < total:
                lr, hr = next(data)
                stage_end = self.step + 1 in (r.psnr_steps, total)
                losses = self.train_step(lr, hr)
                if not all(np.isfinite(v) for v in losses.values()):
                    raise VsrError(f"training diverged at step {self.step}: {losses}")
                with writer.as_default(step=self.step):
                    if self.step % r.log_every == 0 or stage_end:
                        for key, value in losses.items():
                            tf.summary.scalar(f"loss/{key}", value)
                    if self.step % r.val_every == 0 or stage_end:
                        psnr = self.validate(val)
                        if psnr is not None:
                            tf.summary.scalar("val/psnr", psnr)
                            sr = np.clip(np.asarray(self.ema.predict_on_batch(val[0][:4])), 0, 1)
                            up = np.repeat(np.repeat(val[0][:4], 4, axis=1), 4, axis=2)
                            tf.summary.image(
                                "val/lr_sr_hr", np.concatenate([up, sr, val[1][:4]], axis=2), max_outputs=4
                            )
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

    def export(self) -> Any:
        """The EMA generator as a converted model (weights by layer name), ready for the model store."""
        from vsr.models.converted import ConvertedModel

        weights = {
            layer.name: [np.asarray(w) for w in layer.get_weights()] for layer in self.ema.layers if layer.weights
        }
        config = {"num_in_ch": 3, "num_out_ch": 3, **{k: int(v) for k, v in self.config.items()}}
        config.setdefault("scale", 4)
        return ConvertedModel("rrdbnet", config, weights)
