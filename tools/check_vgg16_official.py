r"""Compares flaxgan.metrics.vgg16 with NVIDIA's TorchScript vgg16.pt on real faces.

    python tools/check_vgg16_official.py --weights=vgg16.pt [--faces=tests/data/celeba_small]

The one check this repository cannot run without the file (not vendored: NVIDIA licence, 528 MB):
it loads the same ``vgg16.pt`` twice -- with ``torch.jit.load`` (the official network) and with
``flaxgan.metrics.vgg16.load_params`` -- and reports the largest differences of

* precision/recall features: ``vgg16(uint8 NCHW, return_features=True)`` vs
  ``vgg16_features`` (faces at their 89x109 size, resized to 224 inside both);
* LPIPS: ``||f(a) - f(b)||^2`` of ``vgg16(x, resize_images=False, return_lpips=True)`` vs
  ``lpips_distance`` for pairs of float face crops and noisy copies.

Exits 1 when a difference exceeds its bound (features 1e-3 abs, LPIPS 1e-3 relative), which
would falsify an assumption listed in the ``flaxgan.metrics.vgg16`` docstring (fc1 flatten
order, LPIPS weights as ``w`` rather than ``sqrt(w)``, the normalisation). Needs torch.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--weights', required=True, help="NVIDIA's vgg16.pt")
    ap.add_argument('--faces', default=str(ROOT / 'tests' / 'data' / 'celeba_small'))
    ap.add_argument('--num', type=int, default=8)
    args = ap.parse_args()

    import jax
    import torch

    from flaxgan.images import read_image
    from flaxgan.metrics import vgg16

    files = sorted(pathlib.Path(args.faces).glob('*.jpg'))[: args.num]
    faces = np.stack([read_image(f) for f in files])
    official = torch.jit.load(args.weights).eval()
    params = vgg16.load_params(args.weights)

    with torch.no_grad():
        ref = official(torch.from_numpy(faces).permute(0, 3, 1, 2), return_features=True).numpy()
    ours = np.asarray(jax.jit(vgg16.vgg16_features)(params, faces))
    feat_err = float(np.abs(ours - ref).max())
    print(f'features {ours.shape}: max abs error {feat_err:.3g} (values up to '
          f'{np.abs(ref).max():.3g})')

    crops = faces[:, 20:92, 12:76].astype(np.float32)
    noise = np.random.default_rng(1).standard_normal(crops.shape, dtype=np.float32)
    a = crops
    b = np.concatenate([np.roll(crops, 1, axis=0)[: len(crops) // 2],
                        np.clip(crops + 2 * noise, 0, 255)[len(crops) // 2:]])
    with torch.no_grad():
        lp = lambda x: official(torch.from_numpy(x).permute(0, 3, 1, 2), resize_images=False,
                                return_lpips=True).numpy()
        ref_d = np.square(lp(a) - lp(b)).sum(1)
    our_d = np.asarray(jax.jit(vgg16.lpips_distance)(params, a, b))
    lpips_err = float(np.abs(our_d / ref_d - 1).max())
    print(f'lpips official {np.round(ref_d, 5).tolist()}')
    print(f'lpips flaxgan  {np.round(our_d, 5).tolist()}')
    print(f'lpips: max relative error {lpips_err:.3g}')
    return int(feat_err > 1e-3 or lpips_err > 1e-3)


if __name__ == '__main__':
    sys.exit(main())
