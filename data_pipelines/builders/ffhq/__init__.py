"""The ffhq dataset builder (`python -m data_pipelines.build ffhq --manual_dir=DIR`)."""

from data_pipelines.builders.ffhq.ffhq import Builder

__all__ = ["Builder"]
