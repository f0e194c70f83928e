"""CelebA faces prepared by a detection recipe (`tfds build` / `python -m data_pipelines.build`)."""

from data_pipelines.builders.celeba_faces.celeba_faces import Builder

__all__ = ["Builder"]
