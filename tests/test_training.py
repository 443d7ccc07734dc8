"""vsr extract and vsr train: pairs, losses, the two stages, resume, export."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import TINY, run_vsr, streams, vsr_main
from vsr.degrade import area_downscale
from vsr.errors import VsrError

tf = pytest.importorskip("tensorflow")


@pytest.fixture(scope="module")
def pairs(tmp_path_factory) -> Path:
    """Six 128x128 HR / 32x32 LR pairs written by `vsr extract` from a generated clip."""
    from vsr.sample import write_sample

    root = tmp_path_factory.mktemp("train")
    clip = write_sample(root / "clip.mp4", seconds=2, width=256, height=144, fps=12, audio=False)
    result = run_vsr("extract", str(clip), str(root / "pairs"), "--every", "4", "--crop", "128", "--min-change", "0")
    assert result.returncode == 0, result.stderr
    return root / "pairs"


def test_extract_writes_4_to_1_pairs_and_a_manifest(pairs):
    from vsr.media import read_png

    manifest = json.loads((pairs / "manifest.json").read_text())
    names = sorted(p.name for p in (pairs / "hr").iterdir())
    assert [p["name"] for p in manifest["pairs"]] == names == sorted(p.name for p in (pairs / "lr").iterdir())
    assert len(names) == 6  # 24 frames, one in 4
    assert [p["frame"] for p in manifest["pairs"]] == [0, 4, 8, 12, 16, 20]
    for entry in manifest["pairs"]:
        hr, lr = read_png(pairs / "hr" / entry["name"]), read_png(pairs / "lr" / entry["name"])
        assert hr.shape == (128, 128, 3) and lr.shape == (32, 32, 3)
        assert entry["hr_size"] == [128, 128] and entry["lr_size"] == [32, 32] and entry["source"].endswith("clip.mp4")
    # degraded by default: not the plain area downscale
    first = manifest["pairs"][0]["name"]
    assert not np.array_equal(area_downscale(read_png(pairs / "hr" / first)), read_png(pairs / "lr" / first))


def test_relativistic_losses_against_hand_computed_values():
    from vsr.training.losses import relativistic_d_loss, relativistic_g_loss

    real, fake = np.array([[2.0], [0.0]], np.float32), np.array([[-1.0], [1.0]], np.float32)

    def bce(x, target):
        p = 1 / (1 + np.exp(-x))
        return float(np.mean(-(target * np.log(p) + (1 - target) * np.log(1 - p))))

    rf, fr = real - fake.mean(), fake - real.mean()  # [2, 0] and [-2, 0]
    assert float(relativistic_d_loss(real, fake)) == pytest.approx(0.5 * (bce(rf, 1) + bce(fr, 0)), rel=1e-6)
    assert float(relativistic_g_loss(real, fake)) == pytest.approx(0.5 * (bce(rf, 0) + bce(fr, 1)), rel=1e-6)
    # by hand: softplus(-2)=0.126928, softplus(0)=0.693147
    assert float(relativistic_d_loss(real, fake)) == pytest.approx(0.5 * (0.5 * (0.126928 + 0.693147) * 2), rel=1e-5)


def test_perceptual_loss_is_l1_or_mse_of_features():
    import keras

    from vsr.training.losses import perceptual_loss

    inputs = keras.Input((None, None, 3))
    double = keras.Model(inputs, inputs * 2.0)
    a = np.zeros((1, 2, 2, 3), np.float32)
    b = np.full((1, 2, 2, 3), 0.5, np.float32)
    assert float(perceptual_loss(double, a, b, "l1")) == pytest.approx(1.0)
    assert float(perceptual_loss(double, a, b, "mse")) == pytest.approx(1.0)
    b[0, 0, 0, 0] = 1.0
    assert float(perceptual_loss(double, a, b, "l1")) == pytest.approx((11 * 1.0 + 2.0) / 12)


def test_vgg_features_are_taken_before_the_relu():
    import keras

    from vsr.training.losses import CAFFE_MEAN_BGR, vgg19_preactivation

    vgg = keras.applications.VGG19(include_top=False, weights=None)
    extractor = vgg19_preactivation(None, vgg=vgg)
    rgb = np.random.default_rng(0).random((1, 64, 64, 3), dtype=np.float32)
    features = np.asarray(extractor(rgb))
    assert features.shape == (1, 4, 4, 512)
    assert (features < 0).mean() > 0.1  # pre-activation: negative values survive
    bgr = rgb[..., ::-1] * 255.0 - np.array(CAFFE_MEAN_BGR, np.float32)
    after_relu = np.asarray(keras.Model(vgg.input, vgg.get_layer("block5_conv4").output)(bgr))
    np.testing.assert_allclose(np.maximum(features, 0), after_relu, atol=1e-4, rtol=1e-4)
    # and the linear output is the conv of the previous layer's output with block5_conv4's own weights
    previous = np.asarray(keras.Model(vgg.input, vgg.get_layer("block5_conv3").output)(bgr))
    kernel, bias = vgg.get_layer("block5_conv4").get_weights()
    direct = np.asarray(keras.ops.conv(previous, kernel, padding="same")) + bias
    np.testing.assert_allclose(features, direct, atol=1e-3, rtol=1e-4)


def _trainer(pairs, run_dir, **overrides):
    from vsr.training.trainer import Recipe, Trainer

    base = {"psnr_steps": 4, "gan_steps": 2, "checkpoint_every": 1000, "val_every": 1000, "log_every": 1000}
    return Trainer(Recipe.load("tiny", {**base, **overrides}), pairs, run_dir, vgg_weights=None)


def test_psnr_stage_lowers_l1_on_a_fixed_batch(pairs, tmp_path):
    from keras import ops

    trainer = _trainer(pairs, tmp_path / "run", psnr_steps=30, gan_steps=0, psnr_lr=1e-3)
    lr, hr = next(iter(__import__("vsr.training.data", fromlist=["batches"]).batches(
        trainer.pairs, 128, 2, 0, 0, trainer.recipe.degradation
    )))  # fmt: skip

    def l1() -> float:
        return float(ops.mean(ops.abs(trainer.generator(lr) - hr)))

    before = l1()
    for _ in range(30):
        trainer.train_step(lr, hr)
    assert l1() < 0.5 * before


def test_one_gan_step_changes_both_networks_with_finite_losses(pairs, tmp_path):
    trainer = _trainer(pairs, tmp_path / "run", psnr_steps=0, gan_steps=1)
    g0 = [np.array(w) for w in trainer.generator.get_weights()]
    d0 = [np.array(w) for w in trainer.discriminator.get_weights()]
    lr = np.random.default_rng(0).random((2, 32, 32, 3), dtype=np.float32)
    hr = np.random.default_rng(1).random((2, 128, 128, 3), dtype=np.float32)
    losses = trainer.train_step(lr, hr)
    assert set(losses) == {"g_total", "g_perceptual", "g_gan", "g_l1", "d_loss", "d_real", "d_fake"}
    assert all(np.isfinite(v) for v in losses.values())
    assert losses["g_total"] == pytest.approx(
        losses["g_perceptual"] + 5e-3 * losses["g_gan"] + 1e-2 * losses["g_l1"], rel=1e-5
    )
    assert any(not np.array_equal(a, b) for a, b in zip(g0, trainer.generator.get_weights(), strict=True))
    assert any(not np.array_equal(a, b) for a, b in zip(d0, trainer.discriminator.get_weights(), strict=True))


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(pairs, tmp_path):
    whole = _trainer(pairs, tmp_path / "whole")
    whole.run()
    cut = _trainer(pairs, tmp_path / "cut", psnr_steps=4, gan_steps=2)
    cut.recipe.psnr_steps, cut.recipe.gan_steps = 3, 0  # stop after step 3, as a kill would
    cut.run()
    cut.save()
    resumed = _trainer(pairs, tmp_path / "cut")
    resumed.run()  # restores step 3 and the data position, finishes both stages
    assert resumed.step == whole.step == 6
    for a, b in (
        (resumed.generator, whole.generator),
        (resumed.ema, whole.ema),
        (resumed.discriminator, whole.discriminator),
    ):
        for x, y in zip(a.get_weights(), b.get_weights(), strict=True):
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


def test_train_cli_exports_a_model_that_upscale_uses(pairs, tmp_path, sample_clip):
    store = {"VSR_CACHE_DIR": str(tmp_path / "store")}
    run_dir = tmp_path / "run"
    result = run_vsr(
        "train", str(pairs), "--recipe", "tiny", "--run", str(run_dir), "--psnr-steps", "2", "--gan-steps", "1",
        "--random-vgg-weights-for-tests", "--name", "my-esrgan", **store,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (run_dir / "checkpoint.npz").is_file() and list((run_dir / "logs").iterdir())
    assert "my-esrgan" in run_vsr("models", **store).stdout
    out = tmp_path / "up.mp4"
    up = run_vsr("upscale", str(sample_clip), "--model", "my-esrgan", "-o", str(out), *TINY[2:], **store)
    assert up.returncode == 0, up.stderr
    video = next(s for s in streams(out) if s["codec_type"] == "video")
    assert (video["width"], video["height"]) == (256, 144)


def test_training_data_mistakes_are_clear(pairs, tmp_path):
    from vsr.media import read_png, write_png
    from vsr.training.data import find_pairs

    bad = tmp_path / "bad"
    (bad / "hr").mkdir(parents=True)
    (bad / "lr").mkdir()
    name = sorted((pairs / "hr").iterdir())[0].name
    write_png(bad / "hr" / name, read_png(pairs / "hr" / name))
    with pytest.raises(VsrError, match=f"lr/{name}: missing"):
        find_pairs(bad, 128, 0.1, 0)
    write_png(bad / "lr" / name, read_png(pairs / "hr" / name)[:40, :40])
    with pytest.raises(VsrError, match=f"{name}: hr is 128x128 but lr is 40x40"):
        find_pairs(bad, 128, 0.1, 0)
    result = run_vsr(
        "train",
        str(pairs),
        "--recipe",
        "tiny",
        "--run",
        str(tmp_path / "r"),
        "--vgg-weights",
        str(tmp_path / "none.h5"),
    )
    assert result.returncode == 1 and "cannot load VGG19 weights" in result.stderr
    assert result.stderr.count("error:") == 1 and "Traceback" not in result.stderr


def test_hr_only_folders_synthesise_lr_on_the_fly(pairs, tmp_path):
    from vsr.degrade import Degradation
    from vsr.training.data import batches, find_pairs

    only = tmp_path / "only"
    (only / "hr").mkdir(parents=True)
    for path in (pairs / "hr").iterdir():
        (only / "hr" / path.name).write_bytes(path.read_bytes())
    found = find_pairs(only, 128, 0.2, 0)
    assert found.lr is None and len(found.train) == 5 and len(found.val) == 1
    first = [np.asarray(t) for t in next(iter(batches(found, 128, 2, 7, 3, Degradation())))]
    again = [np.asarray(t) for t in next(iter(batches(found, 128, 2, 7, 3, Degradation())))]
    assert first[0].shape == (2, 32, 32, 3) and first[1].shape == (2, 128, 128, 3)
    for a, b in zip(first, again, strict=True):  # the same step gives the same batch: resumable
        np.testing.assert_array_equal(a, b)


def test_extract_per_scene_keeps_the_first_frames_of_each_scene(tmp_path):
    import av

    from vsr.extract import ExtractOptions, extract
    from vsr.sample import cartoon_frame

    clip = tmp_path / "cuts.mp4"
    with av.open(str(clip), "w") as out:
        stream = out.add_stream("libx264", rate=12)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for i in range(30):
            rgb = cartoon_frame(i, 64, 64, 12)
            if 10 <= i < 20:  # a second scene: inverted colours
                rgb = 255 - rgb
            out.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")))
        out.mux(stream.encode(None))
    manifest = extract([clip], tmp_path / "p", ExtractOptions(every=1, per_scene=2, min_change=0))
    assert [(p["frame"], p["scene"]) for p in manifest["pairs"]] == [(0, 0), (1, 0), (10, 1), (11, 1), (20, 2), (21, 2)]


def test_the_ema_warms_up_so_it_follows_the_generator_not_its_random_start(pairs, tmp_path):
    trainer = _trainer(pairs, tmp_path / "run", psnr_steps=100, gan_steps=0, psnr_lr=1e-3)
    assert trainer.ema_decay() == pytest.approx(0.1)  # (1 + 0) / (10 + 0)
    start = [np.array(w) for w in trainer.ema.get_weights()]
    lr, hr = next(iter(__import__("vsr.training.data", fromlist=["batches"]).batches(
        trainer.pairs, 128, 2, 0, 0, trainer.recipe.degradation
    )))  # fmt: skip
    for _ in range(40):
        trainer.train_step(lr, hr)
    assert trainer.ema_decay() == pytest.approx(41 / 50)

    def distance(a: list[np.ndarray], b: list[np.ndarray]) -> float:
        return float(np.sqrt(sum(np.sum((x - y) ** 2) for x, y in zip(a, b, strict=True))))

    ema, generator = trainer.ema.get_weights(), trainer.generator.get_weights()
    # a fixed 0.999 decay would still hold 96 % of the start: the EMA would sit next to it, far from the generator
    assert distance(ema, generator) < 0.25 * distance(ema, start)
    trainer.step = 10_000
    assert trainer.ema_decay() == pytest.approx(0.999)  # the recipe's decay once warmed up


@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
def test_mixed_precision_steps_keep_float32_weights_and_finite_losses(pairs, tmp_path, precision):
    trainer = _trainer(pairs, tmp_path / "run", psnr_steps=2, gan_steps=2, precision=precision)
    assert trainer.precision == precision
    lr = np.random.default_rng(0).random((2, 32, 32, 3), dtype=np.float32)
    hr = np.random.default_rng(1).random((2, 128, 128, 3), dtype=np.float32)
    for _ in range(4):  # two PSNR steps, two GAN steps
        losses = trainer.train_step(lr, hr)
        assert all(np.isfinite(v) for v in losses.values()), losses
    assert {str(w.dtype) for w in trainer.generator.weights} == {"float32"}
    exported = trainer.export()
    assert all(w.dtype == np.float32 for ws in exported.weights.values() for w in ws)


def test_codec_round_trip_uses_the_frames_before_and_is_seeded():
    from vsr.degrade import Degradation, codec_roundtrip, degrade
    from vsr.metrics import psnr
    from vsr.sample import cartoon_frame

    frames = [cartoon_frame(i, 128, 96, 12) for i in range(8)]
    spec = Degradation(blur_prob=0, noise_prob=0, codec_prob=1.0, codecs=("libx264",), gop=(8, 8), codec_crf=(30, 30))
    draws = [degrade(frames[-1], np.random.default_rng(s), spec, 4, frames[:-1]) for s in range(6)]
    again = [degrade(frames[-1], np.random.default_rng(s), spec, 4, frames[:-1]) for s in range(6)]
    for a, b in zip(draws, again, strict=True):
        np.testing.assert_array_equal(a, b)  # seeded
    clean = area_downscale(frames[-1])
    assert all(d.shape == clean.shape for d in draws)
    assert all(15 < psnr(d, clean) < 50 for d in draws)  # compressed (CRF 30 on 32x24 pixels), not destroyed
    # the frame's position in the GOP varies: as the keyframe (intra) or after its neighbours (inter)
    lrs = [area_downscale(f) for f in frames]
    intra = codec_roundtrip(lrs[-1:], "libx264", 30, 8)
    inter = codec_roundtrip(lrs, "libx264", 30, 8)
    assert not np.array_equal(intra, inter)
    assert any(np.array_equal(d, intra) for d in draws) and any(not np.array_equal(d, intra) for d in draws)
    hevc = codec_roundtrip(lrs[-3:], "libx265", 30, 8)
    assert hevc.shape == clean.shape and 15 < psnr(hevc, clean) < 50
    odd = codec_roundtrip([f[:23, :31] for f in lrs[-2:]], "libx264", 20, 4)  # odd sizes are padded and cropped back
    assert odd.shape == (23, 31, 3)


def test_second_order_degradation_is_seeded_and_lands_on_the_target_size():
    from vsr.degrade import Degradation, degrade
    from vsr.metrics import psnr
    from vsr.sample import cartoon_frame

    hr = cartoon_frame(3, 256, 128, 12)
    spec = Degradation(second_order=True)
    outs = [degrade(hr, np.random.default_rng(s), spec, 4) for s in range(4)]
    assert all(o.shape == (32, 64, 3) and o.dtype == np.uint8 for o in outs)
    np.testing.assert_array_equal(outs[0], degrade(hr, np.random.default_rng(0), spec, 4))
    clean = area_downscale(hr)
    scores = [psnr(o, clean) for o in outs]
    assert all(12 < s < 45 for s in scores), scores  # degraded, still the same picture
    assert len({round(s, 3) for s in scores}) == 4  # each seed its own degradation


def test_extract_records_the_codec_round_trip_and_scale(tmp_path):
    from vsr.sample import write_sample

    clip = write_sample(tmp_path / "clip.mp4", seconds=1, width=128, height=96, fps=12, audio=False)
    default = run_vsr("extract", str(clip), str(tmp_path / "a"), "--every", "4", "--min-change", "0")
    plain = run_vsr("extract", str(clip), str(tmp_path / "b"), "--every", "4", "--min-change", "0", "--no-codec")
    assert default.returncode == 0 == plain.returncode, default.stderr + plain.stderr
    assert default.stderr.count("\n") == 1  # one line: no encoder chatter
    a, b = (json.loads((tmp_path / d / "manifest.json").read_text()) for d in "ab")
    assert a["options"]["degradation"]["codec_prob"] > 0 == b["options"]["degradation"]["codec_prob"]
    assert a["scale"] == 4 and a["options"]["degradation"]["codecs"] == ["libx264", "libx265"]
    bad = run_vsr("extract", str(clip), str(tmp_path / "c"), "--scale", "3")
    assert bad.returncode == 1 and "scale 1, 2 or 4" in bad.stderr and bad.stderr.count("\n") == 1


def test_preloaded_images_give_the_same_batches_as_decoding_per_crop(pairs, monkeypatch):
    import vsr.training.data as data
    from vsr.degrade import Degradation

    found = data.find_pairs(pairs, 128, 0.2, 0)
    kept = [[np.asarray(t) for t in b] for b in data.batches(found, 128, 2, 5, 7, Degradation(enabled=False)).take(3)]
    monkeypatch.setattr(data, "PRELOAD_BYTES", 0)  # too large to keep: decoded again for every crop
    again = [[np.asarray(t) for t in b] for b in data.batches(found, 128, 2, 5, 7, Degradation(enabled=False)).take(3)]
    for (a_lr, a_hr), (b_lr, b_hr) in zip(kept, again, strict=True):
        np.testing.assert_array_equal(a_lr, b_lr)
        np.testing.assert_array_equal(a_hr, b_hr)
    assert len(kept) == 3 and kept[0][1].shape == (2, 128, 128, 3)


def test_a_corrupt_training_image_is_named_and_a_fresh_run_leaves_no_folder(pairs, tmp_path):
    """A PNG whose header is fine but whose pixels are damaged fails inside TensorFlow's graph; vsr names it."""
    data = tmp_path / "data"
    shutil.copytree(pairs, data)
    victim = sorted((data / "hr").iterdir())[1]
    raw = victim.read_bytes()
    victim.write_bytes(raw[:60] + bytes(len(raw) - 72) + raw[-12:])  # header kept, image data zeroed
    run = tmp_path / "r"
    result = vsr_main("train", data, "--recipe", "tiny", "--run", run, "--random-vgg-weights-for-tests")
    assert result.returncode == 1, result.stderr
    (line,) = [x for x in result.stderr.splitlines() if "error:" in x]
    assert f"{victim}: a training image cannot be decoded" in line, result.stderr
    assert not run.exists()


@pytest.mark.parametrize(("backend", "needle"), [("nonsense", "not a Keras backend"), ("jax", "jax is not installed")])
def test_a_keras_backend_that_cannot_run_is_one_line(monkeypatch, sample_clip, backend, needle):
    import importlib.util

    if backend == "jax" and importlib.util.find_spec("jax") is not None:
        pytest.skip("JAX is installed here")
    monkeypatch.setenv("KERAS_BACKEND", backend)
    result = vsr_main("upscale", sample_clip, *TINY)
    assert result.returncode == 2 and needle in result.stderr, result.stderr
    assert result.stderr.count("error:") == 1


def test_checkpoints_keep_weights_by_name_and_older_ones_by_position_still_resume(pairs, tmp_path):
    trainer = _trainer(pairs, tmp_path / "run", psnr_steps=2, gan_steps=1)
    trainer.run()
    path = trainer.save()
    with np.load(path) as data:
        keys = set(data.files)
        saved = {k: data[k] for k in keys}
    names = {layer.name for layer in trainer.generator.layers if layer.weights}
    assert {key.split("/")[1] for key in keys if key.startswith("g/")} == names  # layer names, not positions
    assert not any(key.split("/")[-1].isdigit() for key in keys)
    assert any(key.startswith("opt_g/opt_g/") for key in keys)  # optimizer state under its own stable name

    shuffled = dict(reversed(list(saved.items())))  # the file's order means nothing any more
    np.savez(path, **shuffled)
    again = _trainer(pairs, tmp_path / "run", psnr_steps=2, gan_steps=1)
    assert again.restore() and again.step == trainer.step
    for x, y in zip(again.generator.get_weights(), trainer.generator.get_weights(), strict=True):
        np.testing.assert_array_equal(x, y)

    old = {"step": saved["step"]}  # what vsr 0.1 wrote: every variable by its position
    old |= {key: np.asarray(v.numpy()) for key, v in trainer._positional().items()}
    np.savez(path, **old)
    older = _trainer(pairs, tmp_path / "run", psnr_steps=2, gan_steps=1)
    assert older.restore()
    for x, y in zip(older.discriminator.get_weights(), trainer.discriminator.get_weights(), strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("batch = 'many'", "option batch for recipe"),
        ("psnr_milestones = [1, 'x']", "must be a list of int"),
        ("[degradation]\nblurr_prob = 0.5", "unknown option blurr_prob for the Degradation table"),
        ("patch = 64", "patch must be 128 or 256"),
        ("colour = 'red'", "unknown option colour for recipe"),
    ],
)
def test_recipes_are_validated_as_stage_options_are(tmp_path, text, needle):
    from vsr.errors import UsageError
    from vsr.training.trainer import Recipe

    path = tmp_path / "recipe.toml"
    path.write_text(text + "\n")
    with pytest.raises(UsageError, match=needle):
        Recipe.load(str(path))
