"""The synthetic_faces dataset builder (written by `flaxgan.synth`, `experiments.synth_dataset`)."""

from data_pipelines.builders.synthetic_faces.synthetic_faces import Builder

__all__ = ["Builder"]
