"""The casia_webface dataset builder; see its module docstring."""

from data_pipelines.builders.casia_webface.casia_webface import Builder

__all__ = ["Builder"]
