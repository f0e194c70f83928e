r"""FID Inception throughput (images/s), flaxgan vs the official TorchScript network side by side.

    python benchmarks/inception.py --num=256 --batch=64            # flaxgan only
    python benchmarks/inception.py --num=256 --official --fid      # + torch, + FID of two halves

flaxgan runs ``inception_features`` jitted and sharded over all local devices (set
``XLA_FLAGS=--xla_force_host_platform_device_count=N`` to split a CPU into N devices). The
official side needs ``torch==2.13.0`` (optional extra): it loads the same TorchScript file with
``torch.jit.load`` and applies the official preprocessing (uint8 -> float, ``affine_grid`` /
``grid_sample`` bilinear resize to 299 with the half-pixel correction, ``(x - 128) / 128``), as
NVIDIA's ``inception-2015-12-05`` detector does internally. With ``--fid`` both compute FID / KID
between the first and second half of the images, and the difference is printed in percent.
Prints one JSON line.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys
import time

import jax
import numpy as np
from absl import app, flags

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from flaxgan.metrics import features, fid, inception, kid, pr, stats  # noqa: E402

_DEFAULT_IMAGES = ROOT.parent / 'shared' / 'data' / 'celeba_small'
_IMAGES = flags.DEFINE_string(
    'images', str(_DEFAULT_IMAGES if _DEFAULT_IMAGES.is_dir()
                  else ROOT / 'tests' / 'data' / 'inception' / 'images'), 'Image folder.')
_NUM = flags.DEFINE_integer('num', 256, 'Images to measure.')
_BATCH = flags.DEFINE_integer('batch', 64, 'Batch size.')
_OFFICIAL = flags.DEFINE_bool('official', False, 'Also run the TorchScript network with torch.')
_FID = flags.DEFINE_bool('fid', False, 'FID/KID of the two halves with both implementations.')
_THREADS = flags.DEFINE_integer('torch_threads', os.cpu_count() or 1, 'torch CPU threads.')
_WEIGHTS = flags.DEFINE_string('weights', None, 'TorchScript file (default: find_weights()).')
_OFFICIAL_REPO = flags.DEFINE_string(
    'official_repo', str(ROOT / 'third_party' / 'stylegan2-ada-pytorch'),
    'Official stylegan2-ada-pytorch checkout: its precision/recall distance code (--fid).')


def _images(n: int) -> np.ndarray:
    src = features.folder_source(_IMAGES.value, max_images=n)
    return np.concatenate(list(src.batches(n)))


def _timed(fn, images: np.ndarray, batch: int) -> tuple[np.ndarray, float]:
    fn(images[:batch])  # warm-up / compile
    start = time.perf_counter()
    out = np.concatenate([fn(images[i:i + batch]) for i in range(0, len(images), batch)])
    return out, len(images) / (time.perf_counter() - start)


def _official_extractor(path: str):
    """torch: the TorchScript trunk behind the official preprocessing (the optional extra)."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(_THREADS.value)
    net = torch.jit.load(path, map_location='cpu').eval()

    @torch.no_grad()
    def extract(images: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).to(torch.float32)
        n, c, h, w = x.shape
        theta = torch.eye(2, 3).unsqueeze(0).repeat(n, 1, 1)
        theta[:, 0, 2] += 1 / w - 1 / 299
        theta[:, 1, 2] += 1 / h - 1 / 299
        grid = F.affine_grid(theta, [n, c, 299, 299], align_corners=False)
        x = F.grid_sample(x, grid, mode='bilinear', padding_mode='border', align_corners=False)
        return net((x - 128) / 128).reshape(-1, 2048).numpy()

    return extract


def _fid_kid(feats: np.ndarray) -> tuple[float, float]:
    half = len(feats) // 2
    real, gen = feats[:half], feats[half:2 * half]
    m = lambda x: stats.moments_update(stats.moments_init(x.shape[1]), x)
    return fid.fid_from_moments(m(gen), m(real)), kid.kid(gen, real)


def _pr_official(gen: np.ndarray, real: np.ndarray, nhood_size: int = 3):
    """Precision/recall on the same features through the official distance code
    (`metrics.precision_recall.compute_distances`, one process), float32 on CPU."""
    import torch

    sys.path.insert(0, _OFFICIAL_REPO.value)
    from metrics.precision_recall import compute_distances

    out = []
    for manifold, probes in ((real, gen), (gen, real)):
        manifold, probes = torch.from_numpy(manifold), torch.from_numpy(probes)
        dist = compute_distances(manifold, manifold, num_gpus=1, rank=0, col_batch_size=10000)
        radii = dist.kthvalue(nhood_size + 1).values  # k-th neighbour, the point itself first
        dist = compute_distances(probes, manifold, num_gpus=1, rank=0, col_batch_size=10000)
        out.append(float((dist <= radii).any(dim=1).to(torch.float32).mean()))
    return tuple(out)


def main(argv):
    del argv
    path = _WEIGHTS.value or inception.find_weights()
    images = _images(_NUM.value)
    params = inception.load_params(path)
    extract = features.make_extractor(inception.inception_features, params,
                                      batch_size=_BATCH.value)
    ours, ours_ips = _timed(extract, images, _BATCH.value)
    result = dict(device=str(jax.devices()[0].platform), num_devices=jax.device_count(),
                  num_images=len(images), image_shape=list(images.shape[1:3]),
                  batch=_BATCH.value, flaxgan_images_per_s=round(ours_ips, 2))
    if _OFFICIAL.value:
        official, off_ips = _timed(_official_extractor(path), images, _BATCH.value)
        result.update(official_images_per_s=round(off_ips, 2),
                      speed_ratio=round(ours_ips / off_ips, 3),
                      max_abs_feature_diff=float(np.abs(ours - official).max()),
                      torch_threads=_THREADS.value)
    if _FID.value:
        f_ours, k_ours = _fid_kid(ours)
        half = len(ours) // 2
        p_ours = pr.precision_recall(ours[half:2 * half], ours[:half], half=False)
        result.update(fid_flaxgan=f_ours, kid_flaxgan=k_ours, pr_flaxgan=p_ours)
        if _OFFICIAL.value:
            f_off, k_off = _fid_kid(official)
            result.update(fid_official=f_off, kid_official=k_off,
                          fid_diff_percent=100 * (f_ours - f_off) / f_off,
                          kid_diff_percent=100 * (k_ours - k_off) / abs(k_off),
                          pr_official_code_same_features=_pr_official(ours[half:2 * half],
                                                                      ours[:half]),
                          pr_official_code_torch_features=_pr_official(
                              official[half:2 * half], official[:half]))
    print(json.dumps(result))


if __name__ == '__main__':
    app.run(main)
