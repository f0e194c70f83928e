r"""Records torch references for `flaxgan.metrics.vgg16` with seeded (not pretrained) weights.

    pip install --no-deps torchvision==0.28.0 lpips==0.1.4   # tool only, next to torch 2.13
    python tools/make_vgg16_reference.py --out=tests/data/vgg16

VGG16 weights are drawn with numpy from a seed (`seeded_state_dict`, He-normal kernels, small
normal biases, torchvision's key names and layouts), so the test regenerates them without any
file; `reference.json` records the recipe and a checksum the test compares. Then:

* `resize_*`: torch `affine_grid` + `grid_sample` (bilinear, border, `align_corners=False`) with
  the half-pixel theta correction `theta[0, 2] += 1/W - 1/224`, `theta[1, 2] += 1/H - 1/224`, of
  real faces and of a random 17x23 image, to 224x224 (a fixed random subset of the values);
* `features`: torchvision `vgg16` with those weights on the resized faces, input
  `(x / 127.5 - 1 - shift) / scale` (LPIPS's ScalingLayer = ImageNet mean/std), output
  `classifier[:5]` = relu(fc2(relu(fc1(...)))) [N, 4096];
* `lpips`, `lpips_layers`: `lpips.LPIPS(net='vgg', pnet_rand=True)` (v0.1 heads from the package)
  with the seeded trunk loaded, on pairs of float images in [0, 255] (face crops and noisy copies,
  built by `lpips_pairs`, which the test repeats), fed as `x / 127.5 - 1`;
* `tiny_*.pt[h]`: small torch files for the loader tests: a TorchScript module with NVIDIA's key
  layout (`layers.conv1`, `layers.fc1`, `lpips0`) and torchvision-layout state_dicts in torch's zip
  and legacy formats; `tiny.npz` holds their tensors.

Needs torch, torchvision (its compiled ops are not needed: the tool stubs
`torchvision._meta_registrations`, which fails on CPU-only torch builds) and lpips.
flaxgan itself is not imported.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pathlib
import sys
import types

import numpy as np
from PIL import Image

SEED = 2024
CONV_CHANNELS = (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)
TORCHVISION_CONV = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
PR_FILES = ('001001.jpg', '001002.jpg', '001003.jpg')
LPIPS_FILES = ('001004.jpg', '001005.jpg', '001006.jpg', '001007.jpg')
RESIZE_SAMPLES = 6000


def seeded_state_dict(seed: int = SEED) -> dict[str, np.ndarray]:
    """torchvision-layout VGG16 weights (fc3 omitted) drawn from `np.random.default_rng(seed)`:
    kernels N(0, 2 / fan_in), biases N(0, 0.1^2), float32, in conv1..conv13, fc1, fc2 order."""
    rng = np.random.default_rng(seed)
    f32 = np.float32
    out, cin = {}, 3
    for idx, cout in zip(TORCHVISION_CONV, CONV_CHANNELS, strict=True):
        out[f'features.{idx}.weight'] = (rng.standard_normal((cout, cin, 3, 3), dtype=f32)
                                         * f32(np.sqrt(2.0 / (cin * 9))))
        out[f'features.{idx}.bias'] = rng.standard_normal(cout, dtype=f32) * f32(0.1)
        cin = cout
    for idx, (n_in, n_out) in ((0, (25088, 4096)), (3, (4096, 4096))):
        out[f'classifier.{idx}.weight'] = (rng.standard_normal((n_out, n_in), dtype=f32)
                                           * f32(np.sqrt(2.0 / n_in)))
        out[f'classifier.{idx}.bias'] = rng.standard_normal(n_out, dtype=f32) * f32(0.1)
    return out


def checksum(state: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(np.ascontiguousarray(state[k]).tobytes())
    return h.hexdigest()


def load_faces(folder: pathlib.Path, names: tuple[str, ...]) -> np.ndarray:
    return np.stack([np.asarray(Image.open(folder / n).convert('RGB')) for n in names])


def lpips_pairs(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs `(a, b)` float32 [5, 72, 64, 3] in [0, 255] from 4 faces [4, 109, 89, 3]: two pairs
    of different faces, three of a face and a noisy copy (noise sigma 8, 2, 0.5 grey levels)."""
    crops = faces[:, 20:92, 12:76].astype(np.float32)
    noise = np.random.default_rng(1).standard_normal((3, *crops.shape[1:]), dtype=np.float32)
    sig = np.array([8.0, 2.0, 0.5], np.float32)[:, None, None, None]
    noisy = np.clip(crops[[0, 1, 2]] + noise * sig, 0, 255).astype(np.float32)
    a = np.stack([crops[0], crops[2], crops[0], crops[1], crops[2]])
    b = np.stack([crops[1], crops[3], noisy[0], noisy[1], noisy[2]])
    return a, b


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--out', default='tests/data/vgg16')
    ap.add_argument('--faces', default='tests/data/celeba_small')
    args = ap.parse_args()
    out, faces_dir = pathlib.Path(args.out), pathlib.Path(args.faces)
    out.mkdir(parents=True, exist_ok=True)

    import torch
    import torch.nn.functional as F
    sys.modules.setdefault('torchvision._meta_registrations',
                           types.ModuleType('torchvision._meta_registrations'))
    import lpips
    import torchvision
    torch.set_grad_enabled(False)

    state = seeded_state_dict()
    shift = torch.tensor([-.030, -.088, -.188]).view(1, 3, 1, 1)
    scale = torch.tensor([.458, .448, .450]).view(1, 3, 1, 1)

    def resize(x: torch.Tensor, size: int = 224) -> torch.Tensor:
        n, _, h, w = x.shape
        theta = torch.eye(2, 3).repeat(n, 1, 1)
        theta[:, 0, 2] += 1 / w - 1 / size
        theta[:, 1, 2] += 1 / h - 1 / size
        grid = F.affine_grid(theta, [n, x.shape[1], size, size], align_corners=False)
        return F.grid_sample(x, grid, mode='bilinear', padding_mode='border', align_corners=False)

    nchw = lambda a: torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2).float()
    nhwc = lambda t: t.permute(0, 2, 3, 1).contiguous().numpy()

    # Resize and PR features.
    faces = load_faces(faces_dir, PR_FILES)
    resized = resize(nchw(faces))
    rand = np.random.default_rng(2).integers(0, 256, (1, 17, 23, 3)).astype(np.float32)
    resized_rand = nhwc(resize(nchw(rand)))
    vgg = torchvision.models.vgg16().eval()
    missing = vgg.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=False)
    assert set(missing.missing_keys) == {'classifier.6.weight', 'classifier.6.bias'}, missing
    x = (resized / 127.5 - 1 - shift) / scale
    feats = vgg.classifier[:5](torch.flatten(vgg.avgpool(vgg.features(x)), 1)).numpy()

    sel = np.random.default_rng(3).choice(resized.numel(), RESIZE_SAMPLES, replace=False)
    sel.sort()

    # LPIPS.
    net = lpips.LPIPS(net='vgg', pnet_rand=True, verbose=False).eval()
    lp_state = net.state_dict()
    for idx in TORCHVISION_CONV:
        slice_ = 1 + sum(idx >= b for b in (4, 9, 16, 23))
        for kind in ('weight', 'bias'):
            key = f'net.slice{slice_}.{idx}.{kind}'
            assert key in lp_state, key
            lp_state[key] = torch.from_numpy(state[f'features.{idx}.{kind}'])
    net.load_state_dict(lp_state)
    a, b = lpips_pairs(load_faces(faces_dir, LPIPS_FILES))
    dist, layers = net(nchw(a) / 127.5 - 1, nchw(b) / 127.5 - 1, retPerLayer=True)
    heads = {f'lin{i}.model.1.weight': lp_state[f'lin{i}.model.1.weight'].numpy()
             for i in range(5)}

    np.savez(out / 'reference.npz',
             features=feats.astype(np.float32),
             resize_index=sel.astype(np.int32),
             resize_values=nhwc(resized).reshape(-1)[sel].astype(np.float32),
             resize_random=resized_rand[0, ::4, ::4].astype(np.float32),
             lpips=dist.reshape(-1).numpy().astype(np.float32),
             lpips_layers=torch.cat([t.reshape(-1, 1) for t in layers], 1).numpy(),
             **{f'heads/{k}': v for k, v in heads.items()})

    # Tiny files for the loader tests.
    rng = np.random.default_rng(4)
    tiny = {'features.0.weight': rng.standard_normal((4, 3, 3, 3), dtype=np.float32),
            'features.0.bias': rng.standard_normal(4, dtype=np.float32),
            'classifier.0.weight': rng.standard_normal((5, 6), dtype=np.float32),
            'classifier.0.bias': np.arange(5, dtype=np.float32)}
    tiny_t = {k: torch.from_numpy(v) for k, v in tiny.items()}
    tiny_t['features.0.weight'] = tiny_t['features.0.weight'].transpose(0, 1)  # non-contiguous
    torch.save(tiny_t, out / 'tiny_torchvision_zip.pth')
    torch.save(tiny_t, out / 'tiny_torchvision_legacy.pth', _use_new_zipfile_serialization=False)

    class Layers(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = torch.nn.Conv2d(3, 4, 3, padding=1)
            self.fc1 = torch.nn.Linear(6, 5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv1(x)

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = Layers()
            self.lpips0 = torch.nn.Parameter(torch.from_numpy(tiny['features.0.bias']).abs())

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.layers(x) * self.lpips0.view(1, -1, 1, 1)

    m = Tiny()
    m.layers.conv1.weight.data = torch.from_numpy(tiny['features.0.weight'])
    m.layers.conv1.bias.data = torch.from_numpy(tiny['features.0.bias'])
    m.layers.fc1.weight.data = torch.from_numpy(tiny['classifier.0.weight'])
    m.layers.fc1.bias.data = torch.from_numpy(tiny['classifier.0.bias'])
    torch.jit.save(torch.jit.script(m), str(out / 'tiny_nvidia_layout.pt'))
    saved = {f'state_dict/{k}': v.numpy() for k, v in tiny_t.items()}
    saved.update({'script/layers.conv1.weight': tiny['features.0.weight'],
                  'script/layers.conv1.bias': tiny['features.0.bias'],
                  'script/layers.fc1.weight': tiny['classifier.0.weight'],
                  'script/layers.fc1.bias': tiny['classifier.0.bias'],
                  'script/lpips0': np.abs(tiny['features.0.bias'])})
    np.savez(out / 'tiny.npz', **saved)

    (out / 'reference.json').write_text(json.dumps({
        'seed': SEED,
        'state_sha256': checksum(state),
        'pr_files': list(PR_FILES),
        'lpips_files': list(LPIPS_FILES),
        'torch': torch.__version__,
        'torchvision': torchvision.__version__,
        'lpips': '0.1.4',
    }, indent=1) + '\n')
    print('features', feats.shape, float(np.abs(feats).max()), 'lpips', dist.reshape(-1).tolist())


if __name__ == '__main__':
    main()
