"""The image_mix dataset builder (`python -m data_pipelines.build image_mix --manual_dir=DIR`)."""

from data_pipelines.builders.image_mix.image_mix import Builder

__all__ = ["Builder"]
