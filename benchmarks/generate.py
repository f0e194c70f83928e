r"""Generator throughput, flaxgan vs. the official stylegan2-ada-pytorch, side by side.

    XLA_FLAGS=--xla_force_host_platform_device_count=8 \
    python -m benchmarks.generate --official_repo=third_party/stylegan2-ada-pytorch \
        [--resolution=256 --batch=32 --iters=5 --family=stylegan2|stylegan3]

flaxgan splits the batch over all local devices (on CPU, the XLA flag above makes 8 host
devices that run side by side; on a GPU machine leave it out).

Both generators are built with the official `paper256` kwargs (StyleGAN2: z = w = 512, 8
mapping layers, channel_base 16384, channel_max 512, num_fp16_res 4, conv_clamp 256) or the
official `stylegan3-t` kwargs (`--family=stylegan3`, channel_base 32768, channel_max 512,
magnitude_ema_beta as train.py sets it) from random weights, and timed on the same batches
of z with `noise_mode='const'`, ψ = 1, after warm-up. Mixed precision follows each code base's
own rule for the device: reduced precision on GPUs (fp16 official, bf16 flaxgan), float32 on
CPU. Prints one JSON line per implementation and the ratio flaxgan / official. The official
side needs torch and a local clone of the official repository (not part of flaxgan).
"""

from __future__ import annotations

import json
import platform
import sys
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from flaxgan import sample, xla_cpu
from flaxgan.models import build_generator
from flaxgan.train import sharding

_OFFICIAL = flags.DEFINE_string("official_repo", None,
                                "Clone of NVlabs/stylegan2-ada-pytorch (or stylegan3 for "
                                "--family=stylegan3); omit to time flaxgan only.")
_FAMILY = flags.DEFINE_enum("family", "stylegan2", ["stylegan2", "stylegan3"], "Generator.")
_RESOLUTION = flags.DEFINE_integer("resolution", 256, "Image resolution.")
_BATCH = flags.DEFINE_integer("batch", 32, "Batch size.")
_ITERS = flags.DEFINE_integer("iters", 5, "Timed iterations.")
_WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed warm-up iterations.")
_TIME_FLAXGAN = flags.DEFINE_bool("time_flaxgan", True,
                                   "Time flaxgan (--notime_flaxgan: the official side only, "
                                   "e.g. for its own peak memory).")
_FUSED = flags.DEFINE_enum("fused_modconv", "auto", ["auto", "true", "false", "both"],
                           "flaxgan StyleGAN2 modulated-conv path to time (auto = its default).")


def official_kwargs(family: str, resolution: int) -> dict:
    """The official training configuration's generator kwargs for `family`."""
    if family == "stylegan2":  # train.py --cfg=paper256
        return {"class_name": "training.networks.Generator", "z_dim": 512, "c_dim": 0,
                "w_dim": 512, "img_resolution": resolution, "img_channels": 3,
                "mapping_kwargs": {"num_layers": 8},
                "synthesis_kwargs": {"channel_base": 16384, "channel_max": 512,
                                     "num_fp16_res": 4, "conv_clamp": 256}}
    # stylegan3 train.py --cfg=stylegan3-t
    return {"class_name": "training.networks_stylegan3.Generator", "z_dim": 512, "c_dim": 0,
            "w_dim": 512, "img_resolution": resolution, "img_channels": 3,
            "mapping_kwargs": {"num_layers": 2}, "channel_base": 32768, "channel_max": 512,
            "num_fp16_res": 4, "conv_clamp": 256,
            "magnitude_ema_beta": 0.5 ** (32 / (20 * 1e3))}


def time_it(step: Callable[[int], object], iters: int, warmup: int) -> float:
    """Seconds per call of `step(i)` (which must block until its result is ready)."""
    for i in range(warmup):
        step(i)
    start = time.perf_counter()
    for i in range(iters):
        step(warmup + i)
    return (time.perf_counter() - start) / iters


def flaxgan_step(kwargs: dict, zs: np.ndarray, fused: bool | None) -> Callable[[int], object]:
    """One jitted generator call with the batch split over all local devices, as
    `flaxgan.sample` runs it."""
    G = build_generator(kwargs["class_name"], kwargs)
    variables = sample.replicate(G.init({"params": jax.random.key(0)}, jnp.zeros([1, G.z_dim]),
                                        noise_mode="const"))
    rows = sharding.batch_sharded(sharding.make_mesh(local=True))
    run = xla_cpu.jit(lambda v, z: G.apply(v, z, noise_mode="const", fused_modconv=fused),
                      out_shardings=rows)
    z_dev = [jax.device_put(z, rows) for z in zs]
    return lambda i: run(variables, z_dev[i % len(z_dev)]).block_until_ready()


def official_step(repo: str, kwargs: dict, zs: np.ndarray) -> tuple[Callable, str]:
    sys.path.insert(0, repo)
    import dnnlib  # from the official repository
    import torch  # optional, benchmark only

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    G = dnnlib.util.construct_class_by_name(**kwargs).eval().requires_grad_(False).to(device)
    force_fp32 = device.type == "cpu"
    z_t = [torch.from_numpy(z).to(device) for z in zs]

    def step(i):
        with torch.no_grad():
            img = G(z_t[i % len(z_t)], None, noise_mode="const", force_fp32=force_fp32)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return img

    return step, f"torch {torch.__version__} on {device}"


def main(argv: list[str]) -> None:
    del argv
    kwargs = official_kwargs(_FAMILY.value, _RESOLUTION.value)
    rng = np.random.RandomState(0)
    zs = rng.randn(3, _BATCH.value, 512).astype(np.float32)
    device = (f"{jax.local_device_count()} x {jax.devices()[0].device_kind} "
              f"({jax.default_backend()}) {platform.machine()}")
    results = {}
    variants = {"auto": [None], "true": [True], "false": [False], "both": [True, False]}[
        _FUSED.value] if _FAMILY.value == "stylegan2" else [None]
    for fused in variants if _TIME_FLAXGAN.value else []:
        sec = time_it(flaxgan_step(kwargs, zs, fused), _ITERS.value, _WARMUP.value)
        name = f"flaxgan (fused_modconv={fused})"
        results[name] = _BATCH.value / sec
        print(json.dumps({"impl": name, "images_per_s": round(results[name], 3),
                          "device": device, "batch": _BATCH.value}), flush=True)
    if _OFFICIAL.value:
        step, where = official_step(_OFFICIAL.value, kwargs, zs)
        results["official"] = _BATCH.value / time_it(step, _ITERS.value, _WARMUP.value)
        print(json.dumps({"impl": "official", "images_per_s": round(results["official"], 3),
                          "device": where, "batch": _BATCH.value}), flush=True)
        flaxgan = [v for k, v in results.items() if k.startswith("flaxgan")]
        if flaxgan:
            print(json.dumps({"ratio_flaxgan_over_official":
                              round(max(flaxgan) / results["official"], 3),
                              "family": _FAMILY.value, "resolution": _RESOLUTION.value}))


if __name__ == "__main__":
    app.run(main)
