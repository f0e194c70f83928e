"""Official StyleGAN snapshots and state_dicts <-> flaxgan variables, never running torch.

- `load_snapshot(path)`: an official stylegan2-ada-pytorch / stylegan3 `.pkl` as plain data
  (`ModuleRecord`s for the networks), read without executing anything it contains.
- `to_flax` / `from_flax`: official state_dict <-> `{'params', 'buffers'}` by the rule table
  `RULES`; `check_against` compares converted variables with what a module expects,
  `official_shapes` gives the official shapes a module expects (for `load_snapshot`'s
  `expected_shapes`, which refuses other shapes before copying them).
- `load_tf_snapshot(path)`: an official TensorFlow StyleGAN / StyleGAN2 snapshot (`(G, D, Gs)`
  of `dnnlib.tflib` Networks) as `TFNetworkRecord`s, the embedded build source never run;
  `tf_snapshot.stylegan2_kwargs` / `stylegan2_state_dict` convert TF StyleGAN2 as `legacy.py`,
  `tf_stylegan1` maps StyleGAN v1 variables.
- `torch_io`: the bounded pieces (budget, restricted unpickler, zip entries, tensor views)
  shared with `flaxgan.metrics.torchfile`.
- `save_state_dict_npz` / `load_state_dict_npz`: official state_dicts as `.npz`.

Every failure to read a file is a `SnapshotError` (a ValueError) of one line naming the file.
"""

from flaxgan.convert.name_table import (
    RULES,
    Rule,
    check_against,
    from_flax,
    load_state_dict_npz,
    official_shapes,
    save_state_dict_npz,
    to_flax,
)
from flaxgan.convert.snapshot import ExpectedShapes, ModuleRecord, SnapshotError, load_snapshot
from flaxgan.convert.tf_snapshot import TFNetworkRecord, load_tf_snapshot

__all__ = [
    "ExpectedShapes",
    "ModuleRecord",
    "RULES",
    "Rule",
    "SnapshotError",
    "TFNetworkRecord",
    "check_against",
    "from_flax",
    "load_snapshot",
    "load_tf_snapshot",
    "load_state_dict_npz",
    "official_shapes",
    "save_state_dict_npz",
    "to_flax",
]
