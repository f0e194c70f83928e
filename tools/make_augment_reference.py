r"""Records the official ADA augmentation pipeline on real faces, with every random draw it made.

    python tools/make_augment_reference.py \
        --official_repo=third_party/stylegan2-ada-pytorch --out=tests/data/augment

Runs `training.augment.AugmentPipe` of a local clone of NVlabs/stylegan2-ada-pytorch (torch on
CPU; its custom ops fall back to their reference implementations) on CelebA faces from
`tests/data/celeba_small`, centre-cropped and resized with PIL. While the pipeline runs,
`torch.rand`/`torch.randn` are wrapped so that every draw is recorded in call order, and
`torch.nn.functional.pad` so that the reflect padding it chose is known. The test
`tests/flaxgan/test_augment.py` feeds those draws to `flaxgan.augment` and compares images.

Writes `augment.npz` (inputs as uint8, outputs and draws as float32) and `augment.json` (one
entry per case: pipeline kwargs, p, shape, the kind and shape of every draw, the padding).
Needs torch, PIL and the official clone; flaxgan itself is not imported.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import pathlib
import subprocess
import sys

import numpy as np
from PIL import Image

# Augmentation kwargs of the official presets (train.py `augpipe_specs`), as facts.
_BLIT = {"xflip": 1, "rotate90": 1, "xint": 1}
_GEOM = {"scale": 1, "rotate": 1, "aniso": 1, "xfrac": 1}
_COLOR = {"brightness": 1, "contrast": 1, "lumaflip": 1, "hue": 1, "saturation": 1}
_BGC = {**_BLIT, **_GEOM, **_COLOR}
_BGCFNC = {**_BGC, "imgfilter": 1, "noise": 1, "cutout": 1}
_SINGLE = ["xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac", "brightness",
           "contrast", "lumaflip", "hue", "saturation", "imgfilter", "noise", "cutout"]

# name, pipeline kwargs, p, (height, width), batch, grayscale, seed
CASES: list[tuple[str, dict, float, tuple[int, int], int, bool, int]] = [
    *[(f"single_{t}", {t: 1}, 1.0, (32, 32), 2, False, 100 + i) for i, t in enumerate(_SINGLE)],
    ("bgc_64", _BGC, 0.6, (64, 64), 2, False, 1),
    ("bgcfnc_32", _BGCFNC, 0.7, (32, 32), 4, False, 2),
    ("bgc_gray_32", _BGC, 0.8, (32, 32), 3, True, 3),
    ("bg_nonsquare_32x48", {**_BLIT, **_GEOM}, 0.8, (32, 48), 2, False, 4),
    # Strong zoom-out: the padding reaches its clamp (size - 1) on three sides and the sampling
    # grid leaves the padded image.
    ("geom_strong_32", {**_GEOM, "scale_std": 1.0, "aniso_std": 0.5}, 1.0, (32, 32), 3, False, 8),
]


def load_faces(folder: pathlib.Path, count: int, size: tuple[int, int], gray: bool) -> np.ndarray:
    """`count` faces, centre-cropped to the aspect of `size`, resized (LANCZOS): uint8 NHWC."""
    height, width = size
    images = []
    for path in sorted(folder.glob("*.jpg"))[:count]:
        image = Image.open(path).convert("L" if gray else "RGB")
        w, h = image.size
        crop_w = min(w, round(h * width / height))
        crop_h = min(h, round(crop_w * height / width))
        left, top = (w - crop_w) // 2, (h - crop_h) // 2
        image = image.crop((left, top, left + crop_w, top + crop_h))
        image = image.resize((width, height), Image.LANCZOS)
        array = np.asarray(image, dtype=np.uint8)
        images.append(array[..., None] if gray else array)
    return np.stack(images)


@contextlib.contextmanager
def record_calls(torch, draws: list, pads: list):
    """Wraps torch.rand/randn (recording each result) and F.pad (recording reflect pads)."""
    rand, randn, pad_fn = torch.rand, torch.randn, torch.nn.functional.pad

    def wrap(kind, fn):
        def recorded(*args, **kwargs):
            out = fn(*args, **kwargs)
            draws.append((kind, out.detach().clone()))
            return out
        return recorded

    def recorded_pad(input, pad, mode="constant", value=None):  # torch's names
        if mode == "reflect":
            pads.append([int(v) for v in pad])
        return pad_fn(input, pad, mode=mode) if value is None else pad_fn(input, pad, mode, value)

    torch.rand, torch.randn = wrap("rand", rand), wrap("randn", randn)
    torch.nn.functional.pad = recorded_pad
    try:
        yield
    finally:
        torch.rand, torch.randn, torch.nn.functional.pad = rand, randn, pad_fn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--official_repo", default="third_party/stylegan2-ada-pytorch")
    parser.add_argument("--faces", default="tests/data/celeba_small")
    parser.add_argument("--out", default="tests/data/augment")
    args = parser.parse_args()

    repo = pathlib.Path(args.official_repo).resolve()
    sys.path.insert(0, str(repo))
    import torch
    from training.augment import AugmentPipe

    torch.set_num_threads(1)
    arrays: dict[str, np.ndarray] = {}
    meta: dict = {
        "torch": torch.__version__,
        "official_repo": "NVlabs/stylegan2-ada-pytorch",
        "official_commit": subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"],
                                          capture_output=True, text=True).stdout.strip(),
        "cases": [],
    }
    for name, kwargs, p, size, batch, gray, seed in CASES:
        faces = load_faces(pathlib.Path(args.faces), batch, size, gray)
        pipe = AugmentPipe(**kwargs)
        pipe.p.copy_(torch.as_tensor(p))
        images = torch.from_numpy(faces).permute(0, 3, 1, 2).to(torch.float32) / 127.5 - 1
        draws: list = []
        pads: list = []
        torch.manual_seed(seed)
        with torch.no_grad(), record_calls(torch, draws, pads):
            out = pipe(images)
        arrays[f"{name}/input_uint8"] = faces
        arrays[f"{name}/output"] = out.permute(0, 2, 3, 1).numpy().astype(np.float32)
        for k, (_, value) in enumerate(draws):
            arrays[f"{name}/draw_{k:02d}"] = value.numpy().astype(np.float32)
        meta["cases"].append({
            "name": name, "kwargs": kwargs, "p": p, "shape": [batch, *size, 1 if gray else 3],
            "draws": [[kind, list(value.shape)] for kind, value in draws],
            "reflect_pads": pads,
        })
        print(f"{name}: {len(draws)} draws, reflect pads {pads}")

    out_dir = pathlib.Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out_dir / "augment.npz", **arrays)
    (out_dir / "augment.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"wrote {out_dir / 'augment.npz'} ({(out_dir / 'augment.npz').stat().st_size} bytes)")


if __name__ == "__main__":
    main()
