r"""The projector, measured (issue 17 item 6): reconstruction of held-out real faces, recovery of
generated images from their known w, and speed against the official projector side by side.

    # quality: CelebA faces celeba32 never saw (files 004501-005000) and images it generated
    python -m benchmarks.projection --mode=quality --network=celeba32 --num=8 --steps=1000
    # speed: both projectors on one official snapshot with LPIPS-VGG16 of the same weights
    python -m benchmarks.projection --mode=speed \
        --official_repo=third_party/stylegan2-ada-pytorch \
        --network=../shared/reference/sg2_uncond32.pkl

Quality, for W and W+ (`--spaces`) with the default distance (`project.inception_distance`):

* real faces: `--num` held-out CelebA images cut like the training data
  (`project.align_target(..., 'celeba')`); PSNR (uint8 images, dB) of the reconstruction (the
  final w with the optimised noise maps) against the target, and the final distance;
* recovery: `--num` images the generator drew from known `w = mapping(z)` (ψ = 1, its stored
  noise); the same figures plus the w error `||w_hat - w|| / w_std` (root mean over the ws in
  W+), where `w_std` is the projector's own spread of W: a random w scores about 1.4.

Speed: the official `projector.project` (torch, CPU or CUDA) and `flaxgan.project.project` on
the same generator, the same target (the generator's image of seed 0) and LPIPS-VGG16 with the
same weights on both sides. NVIDIA's `vgg16.pt` cannot be downloaded here, so both sides get
VGG16 weights drawn from a seed (`tools/make_vgg16_reference.seeded_state_dict`) with the LPIPS
v0.1 heads: flaxgan reads them as a torchvision file, the official script gets a TorchScript
module computing NVIDIA's `vgg16(img, resize_images=False, return_lpips=True)` through its
`open_url` (the only change to its code path). Per-step time is
`(t(steps_long) - t(steps_short)) / (steps_long - steps_short)`, per target (`--batch`: flaxgan
projects that many generated targets at once, the official script one per run), which leaves
out what both do once (loading, the 10k-sample w statistics, flaxgan's compilation);
`--repeats` runs give the spread. Float32 on both sides (the official projector runs the
generator in float32 too).
"""

from __future__ import annotations

import contextlib
import io
import json
import pathlib
import platform
import statistics
import sys
import tempfile
import time

import numpy as np
from absl import app, flags

_MODE = flags.DEFINE_enum("mode", "quality", ["quality", "speed"], "What to measure.")
_NETWORK = flags.DEFINE_string("network", "celeba32", "Generator (sample.load).")
_NUM = flags.DEFINE_integer("num", 8, "quality: real faces and generated images projected.")
_STEPS = flags.DEFINE_integer("steps", 1000, "quality: projector steps (official 1000).")
_SPACES = flags.DEFINE_list("spaces", "w,w+", "quality: latent spaces.")
_DISTANCE = flags.DEFINE_string("distance", "inception", "quality: projector distance.")
_SEED = flags.DEFINE_integer("seed", 1, "quality: seed of the generated targets' latents.")
_OFFICIAL = flags.DEFINE_string("official_repo", None,
                                "speed: clone of NVlabs/stylegan2-ada-pytorch.")
_SHORT = flags.DEFINE_integer("steps_short", 10, "speed: the shorter run's steps.")
_LONG = flags.DEFINE_integer("steps_long", 60, "speed: the longer run's steps.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "speed: timed pairs per side.")
_BATCH = flags.DEFINE_integer("batch", 1, "speed: targets flaxgan projects at once (the "
                              "official script projects one per run); times are per target.")
_OUT = flags.DEFINE_string("out", None, "JSON output (default out/projection_<mode>.json).")

FACES = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "celeba_small"
HELD_OUT_FIRST = "004501"  # celeba32 trained on 001001-004500 (its model.json)


def psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """`[N]` PSNR in dB of uint8 images `[N, H, W, C]`."""
    mse = np.mean(np.square(a.astype(np.float64) - b.astype(np.float64)), axis=(1, 2, 3))
    return 10 * np.log10(255.0 ** 2 / np.maximum(mse, 1e-12))


def held_out_faces(resolution: int, num: int) -> tuple[list[str], np.ndarray]:
    """The first `num` held-out CelebA files, cut and resized as celeba32's training data."""
    from PIL import Image

    from flaxgan import project

    files = sorted(p for p in FACES.glob("*.jpg") if p.stem >= HELD_OUT_FIRST)[:num]
    if len(files) < num:
        raise app.UsageError(f"{FACES}: {len(files)} held-out faces, asked for {num}")
    targets = [project.align_target(np.asarray(Image.open(p).convert("RGB")), resolution,
                                    "celeba", name=p.name) for p in files]
    return [p.name for p in files], np.stack(targets)


def _summary(values: np.ndarray) -> dict[str, float]:
    return {"mean": float(np.mean(values)), "std": float(np.std(values)),
            "min": float(np.min(values)), "max": float(np.max(values))}


def quality() -> dict:
    from flaxgan import project, sample

    g = sample.load(_NETWORK.value)
    names, real = held_out_faces(g.img_resolution, _NUM.value)
    z = np.random.RandomState(_SEED.value).randn(_NUM.value, g.z_dim).astype(np.float32)
    true_ws = sample.mapping(g, z)
    generated = sample.to_uint8(sample.synthesize(g, true_ws, noise_mode="const"))
    _, w_std = project.w_statistics(g)
    distance = project.make_distance(_DISTANCE.value)
    rows = []
    for space in _SPACES.value:
        for kind, targets in (("real", real), ("generated", generated)):
            start = time.perf_counter()
            result = project.project(g, targets, space=space, num_steps=_STEPS.value,
                                     distance=distance, keep_trajectory=False)
            seconds = time.perf_counter() - start
            row = {"space": space, "targets": kind, "num": len(targets),
                   "psnr_db": _summary(psnr(sample.to_uint8(result.images), targets)),
                   "distance": _summary(result.dist[-1]),
                   "distance_start": _summary(result.dist[0]), "seconds": seconds}
            if kind == "generated":
                err = np.sqrt(np.mean(np.sum(np.square(result.ws - true_ws), -1), -1))
                row["w_error"] = _summary(err / w_std)
            rows.append(row)
            print(json.dumps(row), flush=True)
    return {"network": _NETWORK.value, "steps": _STEPS.value, "distance": _DISTANCE.value,
            "w_std": w_std, "real_files": names, "generated_seed": _SEED.value, "rows": rows}


# ------------------------------------------------------------------------------------ speed


def _seeded_vgg16_file(directory: str) -> tuple[str, dict[str, np.ndarray]]:
    """The seeded torchvision-layout VGG16 weights, saved where flaxgan's loader reads them."""
    import torch

    from tools.make_vgg16_reference import seeded_state_dict

    state = seeded_state_dict()
    path = str(pathlib.Path(directory) / "vgg16_seeded.pth")
    torch.save({k: torch.from_numpy(v) for k, v in state.items()}, path)
    return path, state


def _torch_lpips_vgg16(state: dict[str, np.ndarray]):
    """TorchScript module with NVIDIA vgg16.pt's LPIPS call signature and semantics:
    `(img [N, 3, H, W] in [0, 255], resize_images=False, return_lpips=True) -> [N, F]` whose
    squared distances are LPIPS-VGG16 (the same function as `flaxgan.metrics.vgg16.
    lpips_features` with these weights)."""
    import torch

    from flaxgan.metrics import vgg16

    heads = vgg16.load_lpips_heads()

    class LpipsVgg16(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.convs = torch.nn.ModuleList()
            for i in vgg16.TORCHVISION_CONV:
                weight = torch.from_numpy(state[f"features.{i}.weight"])
                conv = torch.nn.Conv2d(weight.shape[1], weight.shape[0], 3, padding=1)
                conv.weight.data.copy_(weight)
                conv.bias.data.copy_(torch.from_numpy(state[f"features.{i}.bias"]))
                self.convs.append(conv)
            self.shift = torch.from_numpy(vgg16.LPIPS_SHIFT).view(1, 3, 1, 1)
            self.scale = torch.from_numpy(vgg16.LPIPS_SCALE).view(1, 3, 1, 1)
            self.heads = [torch.from_numpy(heads[f"lpips{s}"]).view(1, -1, 1, 1)
                          for s in range(5)]
            self.taps = list(vgg16.POOL_AFTER)

        def forward(self, img: torch.Tensor, resize_images: bool = True,
                    return_lpips: bool = False) -> torch.Tensor:
            x = (img / 127.5 - 1.0 - self.shift) / self.scale
            out = []
            stage = 0
            for i, conv in enumerate(self.convs):
                x = torch.relu(conv(x))
                if i + 1 in self.taps:  # relu1_2 ... relu5_3, then a 2x2 max pool
                    f = x / (x.square().sum(1, keepdim=True).sqrt() + 1e-10)
                    f = f * (self.heads[stage] / (f.shape[2] * f.shape[3])).sqrt()
                    out.append(f.flatten(1))
                    stage += 1
                    x = torch.nn.functional.max_pool2d(x, 2)
            return torch.cat(out, 1)

    return torch.jit.script(LpipsVgg16().eval().requires_grad_(False))  # frozen, as vgg16.pt


def _official_runner(repo: str, network: str, vgg16_module, target: np.ndarray):
    """`steps -> (seconds, dist per step)` of the official projector on `target` uint8."""
    import torch

    sys.path.insert(0, str(pathlib.Path(repo).resolve()))
    import dnnlib  # noqa: PLC0415 (the official repository, benchmark only)
    import legacy  # noqa: PLC0415
    import projector  # noqa: PLC0415
    from torch_utils import persistence  # noqa: PLC0415
    from training import networks  # noqa: PLC0415

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    # The vendored reference pickles carry a placeholder instead of the embedded network
    # source (../shared/reference/README.md): rebuild their classes from the clone's module.
    persistence._src_to_module = lambda src: networks
    with open(network, "rb") as f:
        G = legacy.load_network_pkl(f)["G_ema"].requires_grad_(False).to(device)
    buffer = io.BytesIO()
    torch.jit.save(vgg16_module, buffer)
    # The official loads vgg16.pt through dnnlib.util.open_url: hand it the seeded module.
    dnnlib.util.open_url = lambda url, **kwargs: io.BytesIO(buffer.getvalue())
    target_t = torch.tensor(target.transpose(2, 0, 1), device=device)

    def run(steps: int) -> tuple[float, list[float]]:
        log = io.StringIO()
        start = time.perf_counter()
        with contextlib.redirect_stdout(log):  # its per-step lines: "step i/n: dist d loss l"
            projector.project(G, target_t, num_steps=steps, device=device, verbose=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        dists = [float(line.split("dist ")[1].split()[0])
                 for line in log.getvalue().splitlines() if "dist " in line]
        return seconds, dists

    return run, f"torch {torch.__version__} on {device}"


def _flaxgan_runner(network: str, vgg16_path: str, targets: np.ndarray):
    import jax

    from flaxgan import project, sample

    g = sample.load(network)
    distance = project.make_distance("lpips", vgg16=vgg16_path)

    def run(steps: int) -> tuple[float, list[float]]:
        start = time.perf_counter()
        result = project.project(g, targets, num_steps=steps, distance=distance,
                                 progress=False, keep_trajectory=False)
        return ((time.perf_counter() - start) / len(targets),
                [float(d) for d in result.dist[:, 0]])

    return run, f"jax {jax.__version__} on {jax.devices()[0].platform} x{jax.device_count()}"


def _per_step(run, short: int, long: int, repeats: int) -> tuple[list[float], list[float]]:
    run(short)  # warm-up (flaxgan compiles its step here)
    times, dists = [], []
    for _ in range(repeats):
        t_short, _ = run(short)
        t_long, dist = run(long)
        times.append((t_long - t_short) / (long - short))
        dists = dist
    return times, dists


def speed() -> dict:
    from flaxgan import sample

    network = _NETWORK.value
    g = sample.load(network)
    targets = sample.to_uint8(sample.synthesize(
        g, sample.mapping(g, sample.seeds_to_z(g, range(_BATCH.value)))))
    out: dict = {"network": network, "resolution": g.img_resolution, "machine":
                 platform.processor() or platform.machine(), "steps": [_SHORT.value, _LONG.value],
                 "flaxgan_batch": _BATCH.value}
    with tempfile.TemporaryDirectory() as tmp:
        vgg16_path, state = _seeded_vgg16_file(tmp)
        sides = {"flaxgan": _flaxgan_runner(network, vgg16_path, targets)}
        if _OFFICIAL.value:
            sides["official"] = _official_runner(_OFFICIAL.value, network,
                                                 _torch_lpips_vgg16(state), targets[0])
        for name, (run, where) in sides.items():
            times, dists = _per_step(run, _SHORT.value, _LONG.value, _REPEATS.value)
            out[name] = {"where": where, "sec_per_step": times,
                         "steps_per_sec": 1 / statistics.median(times),
                         "dist_first": dists[0] if dists else None,
                         "dist_last": dists[-1] if dists else None}
            print(f"{name:8s} {where}: {1e3 * statistics.median(times):.1f} ms per target-step "
                  "(runs "
                  + ", ".join(f"{1e3 * t:.1f}" for t in times) + f"); dist {dists[0]:.4f} -> "
                  f"{dists[-1]:.4f}" if dists else "", flush=True)
    if "official" in out:
        out["speedup"] = out["flaxgan"]["steps_per_sec"] / out["official"]["steps_per_sec"]
        print(f"flaxgan / official steps per second: {out['speedup']:.2f}x")
    return out


def main(argv) -> None:
    del argv
    result = quality() if _MODE.value == "quality" else speed()
    path = pathlib.Path(_OUT.value or f"out/projection_{_MODE.value}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1))
    if _MODE.value == "quality":
        print("| space | targets | PSNR dB (mean ± std) | distance start -> end "
              "| w error / w_std |")
        print("|---|---|---|---|---|")
        for r in result["rows"]:
            w = r.get("w_error")
            print(f"| {r['space'].upper()} | {r['targets']} | {r['psnr_db']['mean']:.2f} ± "
                  f"{r['psnr_db']['std']:.2f} | {r['distance_start']['mean']:.4f} -> "
                  f"{r['distance']['mean']:.4f} | "
                  + (f"{w['mean']:.3f} ± {w['std']:.3f}" if w else "–") + " |")


if __name__ == "__main__":
    app.run(main)
