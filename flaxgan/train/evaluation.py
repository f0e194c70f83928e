"""Metric hook of the training loop: evaluates G_ema against the training data.

The real images come from the training dataset exactly as training sees them (same resolution,
no flips); the fakes from the EMA generator with z ~ N(0, I), ψ = 1 and random noise, the
official metric protocol. Results are appended to `workdir/metrics-eval.jsonl` in the format of
`experiments.eval` and returned as `{metric: value}` for best-checkpoint selection.
"""

from __future__ import annotations

import functools
import json
import os
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from flaxgan.metrics import detectors, features, ppl, registry

__all__ = ["dataset_source", "evaluate", "generator_source", "latent_generator"]


def dataset_source(data: Mapping[str, Any], max_images: int | None = None
                   ) -> features.ImageSource:
    """The training dataset (`config.data`) as a metrics `ImageSource`, in a fixed order."""
    from data_pipelines import input as data_input  # noqa: PLC0415 (TFDS import is slow)

    kwargs = dict(data_dir=data.get("data_dir"), resolution=data.get("resolution"),
                  folder_labels=data.get("folder_labels", False),
                  crop_box=data.get("crop_box"))
    split = data.get("split", "train")
    meta = data_input.dataset_metadata(data["name"], split, **kwargs)
    count = meta.num_examples if max_images is None else min(max_images, meta.num_examples)

    def batches(batch_size: int):
        iterator = data_input.make_dataset(
            data["name"], split, batch_size, shuffle=False, num_epochs=1,
            drop_remainder=False, process_index=0, process_count=1, **kwargs)
        seen = 0
        for batch in iterator:
            images = np.asarray(batch["image"])[: count - seen]
            seen += images.shape[0]
            yield np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images
            if seen >= count:
                return

    # The statistics cache is keyed by this name: it says which images (split, crop) they are.
    what = [os.path.basename(str(data["name"]).rstrip("/")), split]
    if kwargs["crop_box"] is not None:
        what.append("crop" + "_".join(f"{v:g}" for v in kwargs["crop_box"]))
    name = re.sub(r"[^\w.-]+", "_", "-".join(what)) + f"-{meta.resolution}-{count}"
    return features.ImageSource(name=name, num_images=count, batches=batches,
                                resolution=(meta.resolution, meta.resolution))


def generator_source(G, variables, c_dim: int, seed: int = 0, mesh: Mesh | None = None,
                     name: str = "generator") -> features.ImageSource:
    """Endless uint8 RGB samples of `G`, generated data-parallel over `mesh` (default: all
    local devices).

    The official protocol: z ~ N(0, I), ψ = 1, random noise, `clip(x · 127.5 + 128)`;
    conditional models get uniformly drawn classes. Latents and classes are drawn for the whole
    batch from the batch key (the same images for any device count); the noise from the batch
    key folded with the device index.
    """
    mesh = features.batch_mesh() if mesh is None else mesh
    n_dev = mesh.shape[features.BATCH_AXIS]
    variables = jax.device_put(variables, NamedSharding(mesh, P()))

    def local(variables, z, c, key):
        key = jax.random.fold_in(key, jax.lax.axis_index(features.BATCH_AXIS))
        images = G.apply(variables, z, c, noise_mode="random", rngs={"noise": key})
        return features.to_uint8_rgb(images)

    @functools.partial(jax.jit, static_argnums=2)
    def draw(variables, key: jax.Array, n: int) -> jax.Array:
        k_z, k_c, k_noise = jax.random.split(key, 3)
        z = jax.random.normal(k_z, (n, G.z_dim))
        c = features.uniform_labels(k_c, n, c_dim)
        batch = P(features.BATCH_AXIS)
        return jax.shard_map(local, mesh=mesh, in_specs=(P(), batch, batch, P()),
                             out_specs=batch)(variables, z, c, k_noise)

    def sample(key: jax.Array, n: int) -> np.ndarray:
        return np.asarray(draw(variables, key, -(-n // n_dev) * n_dev))[:n]

    return features.generator_source(sample, seed=seed, name=name)


def latent_generator(G, variables) -> ppl.LatentGenerator:
    """`G` as path-length and separability metrics see it: separate mapping and synthesis.

    `synthesis(ws, key)` draws every `noise_const` buffer from `key` and synthesises with
    `noise_mode='const'`: one noise for the whole batch, so both ends of a PPL pair see the
    same noise (the official randomises the buffers per batch in the same way).
    """
    def mapping(z: jax.Array, c: jax.Array) -> jax.Array:
        return G.apply(variables, z, c, method=lambda m, z, c: m.map(z, c))

    def synthesis(ws: jax.Array, key: jax.Array) -> jax.Array:
        leaves, treedef = jax.tree_util.tree_flatten_with_path(variables.get("buffers", {}))
        keys = jax.random.split(key, len(leaves))
        leaves = [jax.random.normal(k, x.shape, x.dtype) if _is_noise(path) else x
                  for k, (path, x) in zip(keys, leaves, strict=True)]
        noisy = {**variables, "buffers": jax.tree_util.tree_unflatten(treedef, leaves)}
        return G.apply(noisy, ws, noise_mode="const",
                       method=lambda m, ws, **k: m.synthesize(ws, **k))

    return ppl.LatentGenerator(mapping=mapping, synthesis=synthesis, z_dim=int(G.z_dim),
                               c_dim=int(G.c_dim))


def _is_noise(path) -> bool:
    return any(getattr(p, "key", None) == "noise_const" for p in path)


def evaluate(metrics: Sequence[str], G, ema_variables, data: Mapping[str, Any], *,
             workdir: str | None = None, kimg: float | None = None, seed: int = 0,
             cache_dir: str | None = None, weights: Mapping[str, str | None] | None = None
             ) -> dict[str, float]:
    """Computes `metrics` (official names) for G_ema; `{name: first value}`.

    Args:
      weights: detector weight files by `detectors.load_detectors` keyword (`inception`,
        `vgg16`, `attribute_classifier`); unset ones use their defaults.

    Dataset statistics are cached in `cache_dir` (default `~/.cache/flaxgan`)."""
    c_dim = int(G.c_dim)
    ctx = registry.MetricContext(real=dataset_source(data),
                                 fake=generator_source(G, ema_variables, c_dim, seed),
                                 generator=latent_generator(G, ema_variables), progress=False,
                                 seed=seed, cache_dir=cache_dir,
                                 **detectors.load_detectors(metrics, **dict(weights or {})))
    values = {}
    for name in metrics:
        start = time.time()
        result = registry.calc_metric(name, ctx)
        first = next(iter(result["results"].values()))
        values[name] = float(first)
        if workdir:
            record = dict(metric=name, value=float(first), num_images=result["num_images"],
                          seconds=round(time.time() - start, 3), kimg=kimg)
            with open(os.path.join(workdir, "metrics-eval.jsonl"), "a") as f:
                f.write(json.dumps(record) + "\n")
    return values
