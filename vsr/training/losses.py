"""ESRGAN's losses (Wang et al. 2018): relativistic-average GAN, and VGG19 features before activation.

Written with ``keras.ops`` only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
from keras import ops

from vsr.errors import VsrError

#: keras.applications' VGG19 weights come from Caffe: BGR input, 0..255, minus these channel means.
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def _bce_with_logits(logits: Any, target: float) -> Any:
    """Mean binary cross-entropy of ``sigmoid(logits)`` against a constant 0 or 1 (numerically stable)."""
    return ops.mean(ops.softplus(-logits) if target == 1.0 else ops.softplus(logits))


def relativistic_d_loss(real_logits: Any, fake_logits: Any) -> Any:
    """Discriminator loss: real should look *more* real than the average fake, and fake less than the average real.

    ``L_D = -E[log D_Ra(x_r, x_f)] - E[log(1 - D_Ra(x_f, x_r))]`` with
    ``D_Ra(a, b) = sigmoid(C(a) - E[C(b)])`` (ESRGAN eq. 1), averaged over the two terms as BasicSR does.
    """
    real_vs_fake = real_logits - ops.mean(fake_logits)
    fake_vs_real = fake_logits - ops.mean(real_logits)
    return 0.5 * (_bce_with_logits(real_vs_fake, 1.0) + _bce_with_logits(fake_vs_real, 0.0))


def relativistic_g_loss(real_logits: Any, fake_logits: Any) -> Any:
    """Generator loss, the symmetric form: it gains from fake *and* real terms (ESRGAN eq. 2)."""
    real_vs_fake = real_logits - ops.mean(fake_logits)
    fake_vs_real = fake_logits - ops.mean(real_logits)
    return 0.5 * (_bce_with_logits(real_vs_fake, 0.0) + _bce_with_logits(fake_vs_real, 1.0))


def vgg19_preactivation(
    weights: str | Path | None, layer: str = "block5_conv4", vgg: keras.Model | None = None
) -> keras.Model:
    """VGG19 features at ``layer`` taken *before* its ReLU, for RGB input in 0..1.

    keras.applications' VGG19 fuses each ReLU into its conv layer, so its
    ``block5_conv4`` output is already rectified. ESRGAN's perceptual loss
    uses the features before activation (denser, and they keep brightness
    information the ReLU throws away). This model runs VGG19 up to the layer
    before ``layer`` and then applies ``layer``'s convolution with its own
    kernel and bias but no activation.

    Args:
        weights: ``"imagenet"`` (downloaded and cached by Keras), a weights
            file (``--vgg-weights``), or ``None`` for random weights (tests only).
        layer: a conv layer of VGG19.
        vgg: an already built ``keras.applications.VGG19`` to take the layers from (``weights`` is then ignored).
    """
    try:
        if vgg is None:
            imagenet = weights == "imagenet"
            vgg = keras.applications.VGG19(include_top=False, weights="imagenet" if imagenet else None)
            if weights is not None and not imagenet:
                vgg.load_weights(str(weights))
    except Exception as exc:  # download failures, wrong files: never train on silently random features
        raise VsrError(
            f"cannot load VGG19 weights ({weights}): {exc}. Offline, pass --vgg-weights FILE "
            "(vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5 from keras-applications)"
        ) from None
    conv = vgg.get_layer(layer)
    names = [lyr.name for lyr in vgg.layers]
    previous = vgg.layers[names.index(layer) - 1]
    linear = keras.layers.Conv2D(conv.filters, conv.kernel_size, padding="same", name=f"{layer}_linear")
    inputs = keras.Input((None, None, 3), name="rgb")
    bgr = ops.flip(inputs * 255.0, axis=-1) - ops.convert_to_tensor(CAFFE_MEAN_BGR)
    trunk = keras.Model(vgg.input, previous.output)
    features = linear(trunk(bgr))
    linear.set_weights(conv.get_weights())
    model = keras.Model(inputs, features, name=f"vgg19_{layer}_preact")
    model.trainable = False
    return model


def perceptual_loss(extractor: keras.Model, sr: Any, hr: Any, criterion: str = "l1") -> Any:
    """Distance between the pre-activation VGG features of ``sr`` and ``hr`` (L1 or MSE)."""
    diff = extractor(sr, training=False) - extractor(hr, training=False)
    return ops.mean(ops.abs(diff)) if criterion == "l1" else ops.mean(ops.square(diff))
