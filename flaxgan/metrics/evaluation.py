"""One evaluation path: a generator against real images, with the official metric protocol.

The training loop's metric hook and `experiments.eval` both go through here:

  * sources: `real_source` (an image folder, or a dataset exactly as training reads it:
    `dataset_source`), `network_source` (G's samples, data-parallel: z ~ N(0, I), ψ = 1,
    random noise, `clip(x · 127.5 + 128)`) and `latent_generator` (G as mapping + synthesis,
    for PPL and LS);
  * `evaluate_context(metrics, ctx, out=...)` computes the metrics and appends one JSON line
    each to `metrics-eval.jsonl`;
  * `evaluate(metrics, G, variables, data, workdir=, kimg=)`: the training hook, all of the
    above for G_ema against the training data; returns `{metric: first value}`.

A line of `metrics-eval.jsonl`: `{"metric", "value" (a number, or {name: number} for metrics
of several values), "features" (the network compared: inception, vgg16, ...), "num_images",
"seconds", ...extra (the hook: "kimg"; experiments.eval: "real", "fake"),
"skipped_unreadable" (folders with unreadable files: {"real": n, ...})}`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from flaxgan import xla_cpu
from flaxgan.images import to_uint8
from flaxgan.metrics import detectors, features, ppl, registry
from flaxgan.train import sharding

__all__ = [
    "METRICS_FILE",
    "dataset_class_probs",
    "dataset_source",
    "evaluate",
    "evaluate_context",
    "latent_generator",
    "network_source",
    "real_source",
]

METRICS_FILE = "metrics-eval.jsonl"


# ------------------------------------------------------------------------------- sources


def dataset_source(data: Mapping[str, Any], max_images: int | None = None
                   ) -> features.ImageSource:
    """A dataset as training reads it (same resolution, crop and split; no flips, fixed
    order) as a metrics `ImageSource` of uint8 RGB batches.

    Args:
      data: a `config.data`-like section (`data_pipelines.input.section_kwargs`).
      max_images: at most this many images (default: all of the split).
    """
    from data_pipelines import input as data_input  # TFDS import is slow

    kwargs = data_input.section_kwargs(data)
    meta = data_input.dataset_metadata(**kwargs)
    count = meta.num_examples if max_images is None else min(max_images, meta.num_examples)

    def batches(batch_size: int) -> Iterator[np.ndarray]:
        iterator = data_input.make_dataset(
            batch_size=batch_size, shuffle=False, num_epochs=1, drop_remainder=False,
            process_index=0, process_count=1, **kwargs)
        seen = 0
        for batch in iterator:
            images = np.asarray(batch["image"])[: count - seen]
            seen += images.shape[0]
            yield np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images
            if seen >= count:
                return

    return features.ImageSource(name=_dataset_name(kwargs, meta.resolution, count),
                                num_images=count, batches=batches,
                                resolution=(meta.resolution, meta.resolution))


def dataset_class_probs(data: Mapping[str, Any], c_dim: int) -> tuple[float, ...] | None:
    """The class frequencies of a dataset (`config.data`-like section) that a generator with
    `c_dim` classes draws its classes from (the official protocol), or None (uniform) when the
    generator is unconditional or the dataset does not have `c_dim` classes."""
    if not c_dim:
        return None
    from data_pipelines import input as data_input  # TFDS import is slow

    probs = data_input.class_frequencies(**data_input.section_kwargs(data))
    return tuple(float(p) for p in probs) if len(probs) == c_dim else None


def _dataset_name(kwargs: Mapping[str, Any], resolution: int, count: int) -> str:
    """The statistics cache's name of a dataset source: which images (split, crop) they are."""
    what = [os.path.basename(str(kwargs["name_or_dir"]).rstrip("/")), kwargs["split"]]
    if kwargs["crop_box"] is not None:
        what.append("crop" + "_".join(f"{v:g}" for v in kwargs["crop_box"]))
    return re.sub(r"[^\w.-]+", "_", "-".join(what)) + f"-{resolution}-{count}"


def real_source(data: str | Mapping[str, Any], data_dir: str | None = None,
                mirror: bool = False) -> features.ImageSource:
    """Real images: a plain image folder (all its images, any sizes), or a dataset (TFDS name,
    prepared folder or `config.data`-like section) as training reads it.

    Args:
      data: a folder, a dataset name or a section.
      data_dir: TFDS data directory for a dataset name.
      mirror: append the x-flipped copy of every image (the official `--mirror`).
    """
    from data_pipelines import input as data_input  # TFDS import is slow

    if (isinstance(data, str) and os.path.isdir(data)
            and not data_input.is_prepared_dir(data)):
        return features.folder_source(data, xflip=mirror)
    section = dict(data) if not isinstance(data, str) else {"name": data, "data_dir": data_dir}
    source = dataset_source(section)
    return features.mirrored(source) if mirror else source


def network_source(G, variables, c_dim: int, seed: int = 0, mesh: Mesh | None = None,
                   name: str = "generator", class_probs: Sequence[float] | None = None
                   ) -> features.ImageSource:
    """Endless uint8 RGB samples of the generator module `G`, generated data-parallel over
    `mesh` (default: all local devices).

    The official protocol: z ~ N(0, I), ψ = 1, random noise, `clip(x · 127.5 + 128)`;
    conditional models get classes drawn from `class_probs` (the dataset's class frequencies,
    `dataset_class_probs`; uniform when None). Latents and classes are drawn for the whole
    batch from the batch key (the same images for any device count); the noise from the batch
    key folded with the device index.
    """
    mesh = sharding.make_mesh(local=True) if mesh is None else mesh
    n_dev = mesh.shape[sharding.BATCH_AXIS]
    variables = sharding.replicate(variables, mesh)

    def local(variables, z, c, key):
        key = jax.random.fold_in(key, jax.lax.axis_index(sharding.BATCH_AXIS))
        # ψ = 1 given: StyleGAN v1's `G_style` truncates by default (ψ 0.7, the official
        # `truncation_psi`); its metrics run `is_validation`, untruncated.
        images = G.apply(variables, z, c, truncation_psi=1.0, noise_mode="random",
                         rngs={"noise": key})
        return to_uint8(images, rgb=True)

    @functools.partial(xla_cpu.jit, static_argnums=2)
    def draw(variables, key: jax.Array, n: int) -> jax.Array:
        k_z, k_c, k_noise = jax.random.split(key, 3)
        z = jax.random.normal(k_z, (n, G.z_dim))
        c = features.class_labels(k_c, n, c_dim, class_probs)
        batch = P(sharding.BATCH_AXIS)
        return jax.shard_map(local, mesh=mesh, in_specs=(P(), batch, batch, P()),
                             out_specs=batch)(variables, z, c, k_noise)

    def sample(key: jax.Array, n: int) -> np.ndarray:
        return np.asarray(draw(variables, key, -(-n // n_dev) * n_dev))[:n]

    return features.generator_source(sample, seed=seed, name=name)


def latent_generator(G, variables, class_probs: Sequence[float] | None = None
                     ) -> ppl.LatentGenerator:
    """`G` as path-length and separability metrics see it: separate mapping and synthesis.

    `synthesis(ws, key)` draws every stored noise buffer (`noise_const`; StyleGAN v1's
    `noise<i>`) from `key` and synthesises with `noise_mode='const'`: one noise for the whole
    batch, so both ends of a PPL pair see the same noise (the official randomises the buffers
    per batch in the same way).
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
                               c_dim=int(G.c_dim),
                               class_probs=None if class_probs is None else tuple(class_probs))


_NOISE_BUFFER = re.compile(r"noise_const|noise\d+")  # StyleGAN2 / StyleGAN v1


def _is_noise(path) -> bool:
    return any(_NOISE_BUFFER.fullmatch(str(getattr(p, "key", ""))) for p in path)


# ------------------------------------------------------------------------------ records


def evaluate_context(metrics: Sequence[str], ctx: registry.MetricContext, *,
                     out: str | None = None, extra: Mapping[str, Any] | None = None,
                     echo: bool = False) -> list[dict[str, Any]]:
    """Computes `metrics` (official names) in order; one record each (module doc).

    The generated images' FID Inception features are kept for the next metric only when
    another FID or KID of the list reads them; a lone FID streams their moments.

    Args:
      metrics: metric names (`registry.list_metrics()`).
      ctx: the sources and detectors.
      out: JSON-lines file each record is appended to (None: none).
      extra: fields added to every record (`kimg`, `real`, `fake`).
      echo: print each record's JSON line.

    Returns:
      The records, in order.
    """
    sharing = sum(m.startswith(("fid", "kid")) for m in metrics) > 1
    if ctx.keep_generated_features != sharing:
        ctx = dataclasses.replace(ctx, keep_generated_features=sharing)
    records = []
    for name in metrics:
        result = registry.calc_metric(name, ctx)
        values = result["results"]
        record = dict(metric=name,
                      value=next(iter(values.values())) if len(values) == 1 else values,
                      features=detectors.feature_network(name),
                      num_images=result["num_images"], seconds=round(result["seconds"], 3),
                      **dict(extra or {}))
        skipped = {k: len(s.skipped) for k, s in dict(real=ctx.real, fake=ctx.fake).items()
                   if s is not None and s.skipped}
        if skipped:  # counted like the dataset builders' unreadable files
            record["skipped_unreadable"] = skipped
        line = json.dumps(record)
        if echo:
            print(line, flush=True)
        if out:
            os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
            with open(out, "a") as f:
                f.write(line + "\n")
        records.append(record)
    return records


def evaluate(metrics: Sequence[str], G, ema_variables, data: Mapping[str, Any], *,
             workdir: str | None = None, kimg: float | None = None, seed: int = 0,
             cache_dir: str | None = None, weights: Mapping[str, str | None] | None = None
             ) -> dict[str, float]:
    """The training loop's metric hook: `metrics` of the generator module `G` with variables
    `ema_variables` (G_ema) against the dataset `data` (a `config.data`-like section).

    Args:
      metrics: official metric names.
      workdir: the run; records are appended to `workdir/metrics-eval.jsonl` with `kimg`.
      kimg: training progress, recorded with each value.
      seed: generator sampling and KID subsets.
      cache_dir: dataset statistics cache (default `~/.cache/flaxgan`).
      weights: detector weight files by `detectors.load_detectors` keyword (`inception`,
        `vgg16`, `attribute_classifier`); unset ones use their defaults.

    Returns:
      `{metric: first value}` (best-checkpoint selection).
    """
    class_probs = dataset_class_probs(data, int(G.c_dim))
    ctx = registry.MetricContext(
        real=dataset_source(data),
        fake=network_source(G, ema_variables, int(G.c_dim), seed, class_probs=class_probs),
        generator=latent_generator(G, ema_variables, class_probs), progress=False, seed=seed,
        cache_dir=cache_dir, **detectors.load_detectors(metrics, **dict(weights or {})))
    out = os.path.join(workdir, METRICS_FILE) if workdir else None
    records = evaluate_context(metrics, ctx, out=out, extra=dict(kimg=kimg))
    return {r["metric"]: _first(r["value"]) for r in records}


def _first(value: float | Mapping[str, float]) -> float:
    return float(next(iter(value.values())) if isinstance(value, Mapping) else value)
