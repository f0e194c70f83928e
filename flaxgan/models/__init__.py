"""Network families: StyleGAN2-ADA (and StyleGAN3), built from official class names + kwargs."""

from flaxgan.models.registry import build_discriminator, build_generator

__all__ = ["build_generator", "build_discriminator"]
