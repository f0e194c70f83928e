"""Synthetic face datasets: style-mixing auto-labelled sets, scored exports, their evaluation.

  `mixing`    m source × n destination seeds, coarse styles from the source, the source's labels
              propagated to the m·n images (`make_mix_dataset`);
  `export`    N faces for augmentation: scored, filtered, rebalanced, resumable (`export_faces`);
  `quality`   per-image scores (MTCNN face / landmarks, D, realism score) and the filters;
  `balance`   attribute fractions and rebalancing to a target by quota rejection sampling;
  `evaluate`  an attribute classifier against a labelled dataset (accuracy, confusion, no-face
              count) and the side-by-side table;
  `store`     the resumable chunk folders.

Datasets are written by `data_pipelines.builders.synthetic_faces` (TFDS, ArrayRecord) and read
with `data_pipelines.input.make_dataset`. Command line: `python -m experiments.synth_dataset`.
"""

from flaxgan.synth import balance, evaluate, export, mixing, quality, store
from flaxgan.synth.export import ExportResult, Scorers, export_faces, load_scorers
from flaxgan.synth.mixing import LabelTable, MixResult, make_mix_dataset, read_labels_file

__all__ = ["ExportResult", "LabelTable", "MixResult", "Scorers", "balance", "evaluate",
           "export", "export_faces", "load_scorers", "make_mix_dataset", "mixing", "quality",
           "read_labels_file", "store"]
