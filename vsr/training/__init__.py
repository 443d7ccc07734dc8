"""ESRGAN training: data, losses, discriminator and the training loop (TensorFlow backend)."""
