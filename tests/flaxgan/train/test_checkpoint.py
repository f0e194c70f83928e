"""`Checkpointer` saves: replicated arrays from one host copy, sharded ones left to Orbax."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from flaxgan.train import checkpoint, sharding


def _tree(mesh):
    return {
        "replicated": sharding.replicate(np.arange(12, dtype=np.float32).reshape(3, 4), mesh),
        "step": sharding.replicate(jnp.int32(7), mesh),
        "rows": jax.device_put(np.arange(16, dtype=np.float32).reshape(8, 2),
                               sharding.batch_sharded(mesh)),
    }


def test_host_copy_takes_replicated_arrays_once_and_leaves_sharded_ones():
    tree = _tree(sharding.make_mesh())
    host = checkpoint._host_copy(tree)
    assert isinstance(host["replicated"], np.ndarray) and isinstance(host["step"], np.ndarray)
    assert host["rows"] is tree["rows"]  # split over the devices: Orbax writes its shards
    np.testing.assert_array_equal(host["replicated"], np.asarray(tree["replicated"]))


def test_replicated_and_sharded_arrays_restore_into_the_target(tmp_path):
    """Values, dtypes and the target's shardings come back (bit equality is the contract)."""
    mesh = sharding.make_mesh()
    tree = _tree(mesh)
    saver = checkpoint.Checkpointer(str(tmp_path))
    saver.save(3, tree, {"position": 5}, {"tick": 1})
    target = _tree(mesh)
    restored, data, meta = checkpoint.Checkpointer(str(tmp_path)).restore(target)
    assert data == {"position": 5} and meta == {"tick": 1}
    for key, want in tree.items():
        got = restored[key]
        assert got.dtype == want.dtype and got.sharding == target[key].sharding, key
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want), err_msg=key)
