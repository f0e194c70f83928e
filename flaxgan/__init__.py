"""flaxgan: the StyleGAN family (StyleGAN2-ADA, StyleGAN3) in JAX/Flax."""

__version__ = "0.1.0"
