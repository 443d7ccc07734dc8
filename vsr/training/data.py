"""Training data: LR/HR pairs from a folder, as a ``tf.data`` pipeline that a resumed run replays exactly.

Every random choice of batch ``step`` (which images, where to crop, flips
and rotations, and for ``hr/``-only folders the degradation) is a stateless
function of ``(seed, step)``. Resuming at step ``s`` therefore yields the very
batches an uninterrupted run would have seen, with nothing to checkpoint but
the step number. Images are sampled without replacement within an epoch (a
stateless permutation per epoch).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vsr.degrade import SCALE, Degradation, degrade
from vsr.errors import VsrError


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's header (no decoding)."""
    try:
        with path.open("rb") as fh:
            head = fh.read(24)
    except OSError as exc:
        raise VsrError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise VsrError(f"{path}: not a PNG image")
    width, height = struct.unpack(">II", head[16:24])
    return int(width), int(height)


@dataclass
class Pairs:
    """The images of a training folder, split into training and validation."""

    hr: list[Path]
    lr: list[Path] | None
    train: list[int]
    val: list[int]
    scale: int = SCALE


def find_pairs(root: Path, patch: int, val_fraction: float, seed: int, scale: int = SCALE) -> Pairs:
    """``root/hr/*.png`` and, if present, ``root/lr/*.png`` paired by name and checked to be ``scale``:1."""
    hr_dir, lr_dir = root / "hr", root / "lr"
    if not hr_dir.is_dir():
        raise VsrError(f"{root}: no hr/ folder (expected hr/ and lr/ as `vsr extract` writes them)")
    hr = sorted(p for p in hr_dir.iterdir() if p.suffix.lower() == ".png")
    if not hr:
        raise VsrError(f"{hr_dir}: no PNG images")
    lr: list[Path] | None = None
    if lr_dir.is_dir():
        lr = []
        for path in hr:
            partner = lr_dir / path.name
            if not partner.is_file():
                raise VsrError(f"{partner}: missing (every hr/ image needs an lr/ image of the same name)")
            (hw, hh), (lw, lh) = png_size(path), png_size(partner)
            if (hw, hh) != (lw * scale, lh * scale):
                raise VsrError(
                    f"{path.name}: hr is {hw}x{hh} but lr is {lw}x{lh}; they must be exactly {scale}:1 "
                    f"(the model's scale; `vsr extract --scale {scale}` writes such pairs)"
                )
            lr.append(partner)
    for path in hr:
        w, h = png_size(path)
        if min(w, h) < patch:
            raise VsrError(f"{path}: {w}x{h} is smaller than the {patch}-pixel training patch")
    order = np.random.default_rng(seed).permutation(len(hr)).tolist()
    n_val = min(len(hr) - 1, max(1, round(len(hr) * val_fraction))) if len(hr) > 1 and val_fraction > 0 else 0
    return Pairs(hr, lr, sorted(order[n_val:]), sorted(order[:n_val]), scale)


def _degrade_fn(spec: Degradation, seed: int, scale: int) -> Any:
    def run(hr: np.ndarray, key: np.int64) -> np.ndarray:
        return degrade(hr, np.random.default_rng([seed, int(key)]), spec, scale)

    return run


def batches(pairs: Pairs, patch: int, batch: int, seed: int, start_step: int, spec: Degradation) -> Any:
    """``(lr, hr)`` float32 batches in 0..1 for steps ``start_step``, ``start_step + 1``, ... (endless)."""
    import tensorflow as tf

    hr_paths = tf.constant([str(pairs.hr[i]) for i in pairs.train])
    lr_paths = tf.constant([str(pairs.lr[i]) for i in pairs.train]) if pairs.lr else None
    n = len(pairs.train)
    scale = pairs.scale
    small = patch // scale
    degrade_fn = _degrade_fn(spec, seed, scale)
    hr_images = _Images.load([pairs.hr[i] for i in pairs.train], hr_paths)
    lr_images = _Images.load([pairs.lr[i] for i in pairs.train], lr_paths) if pairs.lr else None

    def item(k: Any) -> tuple[Any, Any]:
        epoch, pos = k // n, k % n
        perm = tf.random.experimental.stateless_shuffle(tf.range(n, dtype=tf.int64), seed=tf.stack([seed, epoch]))
        index = perm[pos]
        keys = tf.random.experimental.stateless_split(tf.stack([tf.cast(seed, tf.int64), k]), num=4)
        hr = hr_images.get(index)
        shape = tf.shape(hr)
        ys = (shape[0] // scale - small) + 1
        xs = (shape[1] // scale - small) + 1
        y = tf.random.stateless_uniform([], keys[0], 0, ys, dtype=tf.int32)
        x = tf.random.stateless_uniform([], keys[1], 0, xs, dtype=tf.int32)
        hr_patch = hr[y * scale : y * scale + patch, x * scale : x * scale + patch]
        if lr_images is not None:
            lr = lr_images.get(index)
            lr_patch = lr[y : y + small, x : x + small]
        else:
            lr_patch = tf.numpy_function(degrade_fn, [hr_patch, k], tf.uint8)
        lr_patch = tf.ensure_shape(lr_patch, (small, small, 3))
        hr_patch = tf.ensure_shape(hr_patch, (patch, patch, 3))
        # the same flips and quarter turns for both
        turns = tf.random.stateless_uniform([], keys[2], 0, 4, dtype=tf.int32)
        flip = tf.random.stateless_uniform([], keys[3], 0, 2, dtype=tf.int32)
        pair = []
        for image in (lr_patch, hr_patch):
            image = tf.image.rot90(image, turns)
            image = tf.cond(flip > 0, lambda im=image: tf.image.flip_left_right(im), lambda im=image: im)
            pair.append(tf.cast(image, tf.float32) / 255.0)
        return pair[0], pair[1]

    first = start_step * batch
    dataset = tf.data.Dataset.range(first, np.iinfo(np.int64).max)
    dataset = dataset.map(item, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.batch(batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


#: decoded training images up to this many bytes are kept in memory rather than decoded again for every crop
PRELOAD_BYTES = 512 * 2**20


@dataclass
class _Images:
    """The training images for the pipeline: decoded once and kept (small sets), or read and decoded per crop."""

    paths: Any
    pixels: Any = None  # every image's pixels, one after the other, flattened
    offsets: Any = None
    shapes: Any = None

    @classmethod
    def load(cls, files: list[Path], paths: Any) -> _Images:
        import tensorflow as tf

        sizes = [png_size(f) for f in files]
        if sum(w * h * 3 for w, h in sizes) > PRELOAD_BYTES:
            return cls(paths)
        # decoded by the same op as the per-crop path, so either gives the same batches
        images = [tf.io.decode_png(tf.io.read_file(str(f)), channels=3).numpy() for f in files]
        offsets = np.cumsum([0] + [im.size for im in images])[:-1]
        flat = np.concatenate([im.ravel() for im in images])
        shapes = np.array([im.shape for im in images], np.int64)
        return cls(paths, tf.constant(flat), tf.constant(offsets, tf.int64), tf.constant(shapes))

    def get(self, index: Any) -> Any:
        import tensorflow as tf

        if self.pixels is None:
            return tf.io.decode_png(tf.io.read_file(self.paths[index]), channels=3)
        shape = self.shapes[index]
        start = self.offsets[index]
        return tf.reshape(self.pixels[start : start + tf.reduce_prod(shape)], shape)


def validation_side(pairs: Pairs, patch: int, multiple: int, largest: int = 256) -> int:
    """The HR side of the held-out crops: up to ``largest``, at least ``patch``, fitting every held-out image.

    A multiple of ``scale * multiple`` so the LR crop fits the network's input multiple.
    """
    step = pairs.scale * multiple
    fits = min((min(png_size(pairs.hr[i])) for i in pairs.val), default=patch)
    return max(patch, min(largest, fits)) // step * step


def validation_set(
    pairs: Pairs, side: int, seed: int, spec: Degradation, limit: int = 16
) -> tuple[np.ndarray, np.ndarray]:
    """Centre crops (HR ``side`` pixels) of the held-out images, as two float32 arrays (LR, HR) in 0..1.

    Empty if nothing is held out. ``hr/``-only folders get their LR crops degraded with a fixed seed per image.
    """
    from vsr.media import read_png

    scale = pairs.scale
    lrs, hrs = [], []
    for i in pairs.val[:limit]:
        hr = read_png(pairs.hr[i])
        y = (hr.shape[0] - side) // 2 // scale * scale
        x = (hr.shape[1] - side) // 2 // scale * scale
        hr_patch = hr[y : y + side, x : x + side]
        if pairs.lr is not None:
            lr = read_png(pairs.lr[i])
            lr_patch = lr[y // scale : (y + side) // scale, x // scale : (x + side) // scale]
        else:
            lr_patch = degrade(hr_patch, np.random.default_rng([seed, -1 - i]), spec, scale)
        lrs.append(lr_patch)
        hrs.append(hr_patch)
    if not hrs:
        small = side // scale
        return np.zeros((0, small, small, 3), np.float32), np.zeros((0, side, side, 3), np.float32)
    return np.stack(lrs).astype(np.float32) / 255.0, np.stack(hrs).astype(np.float32) / 255.0
