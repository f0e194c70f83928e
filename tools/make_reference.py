r"""Records reference vectors of one network configuration by running NVIDIA's official code.

    python tools/make_reference.py --official_repo=third_party/stylegan2-ada-pytorch \
        --out_dir=tests/data/reference_extra sg2_cond64_gray_orig sg2_gray16_resnet_skip \
        sg2_freezed8_trainkwargs
    python tools/make_reference.py --official_repo=third_party/stylegan3 \
        --out_dir=tests/data/reference_extra sg3r_32 sg3t_cond64_gray
    python tools/make_reference.py --official_repo=... --out_dir=... --list

Each positional argument names a preset below (the two vendored configurations `sg2_uncond32`
and `sg3t_32` are presets too, so they can be regenerated and compared), or use `--name`,
`--family`, `--G_kwargs`, `--D_kwargs` (JSON) for a configuration of your own.

The official networks are imported at run time from a local clone given by `--official_repo`
(NVlabs/stylegan2-ada-pytorch for StyleGAN2, NVlabs/stylegan3 for StyleGAN3; both clones use
the same package names, so one run handles one family). Torch runs on CPU in float32
(`force_fp32=True` wherever the official code would use float16 blocks), single-threaded and
with deterministic algorithms: re-running on the same machine gives bit-identical files
(another CPU model rounds torch's kernels differently, ≤ 5e-7 on the recorded outputs).

Writes `NAME.npz` (np.savez_compressed), `NAME.json` and `NAME.pkl` in exactly the format of
`tests/data/reference/README.md` (= ../shared/reference/README.md):

* `torch.manual_seed(seed)`, then G and D are constructed from their kwargs; a
  `torch.Generator` seeded `seed + 1` then draws, in this order: `+= 0.1 * randn` for every
  trainable parameter (G's `named_parameters()` then D's), `w_avg = 0.5 * randn`, for StyleGAN3
  `magnitude_ema = 0.5 + rand` for every such buffer, and the fake "real" images
  `clamp(randn, -1, 1)`.
* The `.pkl` is written before anything runs, as official training writes a snapshot
  (`copy.deepcopy(module).eval().requires_grad_(False)` of G, D and G_ema = G, pickled in a dict
  with `augment_pipe=None, training_set_kwargs=None`), except that the embedded module source
  of every persistent class is a one-line placeholder.
* StyleGAN2 loss phases (official `training.loss.StyleGAN2Loss`) run last, in training mode
  from `torch.manual_seed(777)`; the recorded `state/G.*` is the state after them (their mapping
  passes moved `w_avg`; the value the outputs were made with is `io/w_avg_before`).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import pathlib
import pickle
import subprocess
import sys
from typing import Any

import numpy as np

PLACEHOLDER_SRC = "# source code of the defining module omitted from this reference snapshot\n"
SEEDS = (0, 1, 2, 3)
TRUNCATIONS = {"io/ws_psi0.7": {"psi": 0.7, "cutoff": None},
               "io/ws_psi0.5_cutoff2": {"psi": 0.5, "cutoff": 2}}
MIX_CUTOFF = 4
NOISE_RANDOM_SEED = 55
LOSS_SEED = 777
TRANSFORM = dict(translate=(0.1, -0.05), rotate=10.0)
LOSS = dict(r1_gamma=1.0, pl_batch_shrink=2, pl_decay=0.01, pl_weight=2, style_mixing_prob=0)
SOURCES = {"stylegan2": "NVlabs/stylegan2-ada-pytorch", "stylegan3": "NVlabs/stylegan3"}
SG2_G = "training.networks.Generator"
SG2_D = "training.networks.Discriminator"
SG3_G = "training.networks_stylegan3.Generator"
SG3_D = "training.networks_stylegan2.Discriminator"


def _sg3_ema_beta(batch_size: int = 32) -> float:
    """`magnitude_ema_beta` as the official StyleGAN3 training sets it (20 kimg half-life)."""
    return 0.5 ** (batch_size / (20 * 1e3))


# name -> family, StyleGAN3 config letter, construction seed, G kwargs, D kwargs. The kwargs
# are passed to the official constructors as they are (and recorded in the json / pickle).
PRESETS: dict[str, dict[str, Any]] = {
    # The two vendored configurations (tests/data/reference), for regeneration checks.
    "sg2_uncond32": dict(
        family="stylegan2", seed=123,
        G_kwargs=dict(class_name=SG2_G, z_dim=512, c_dim=0, w_dim=128, img_resolution=32,
                      img_channels=3, mapping_kwargs=dict(num_layers=8),
                      synthesis_kwargs=dict(channel_base=1024, channel_max=64, num_fp16_res=0,
                                            conv_clamp=None, architecture="skip")),
        D_kwargs=dict(class_name=SG2_D, c_dim=0, img_resolution=32, img_channels=3,
                      architecture="resnet", channel_base=1024, channel_max=64, num_fp16_res=0,
                      conv_clamp=None, epilogue_kwargs=dict(mbstd_group_size=4))),
    "sg3t_32": dict(
        family="stylegan3", config="T", seed=321,
        G_kwargs=dict(class_name=SG3_G, z_dim=512, c_dim=0, w_dim=128, img_resolution=32,
                      img_channels=3, mapping_kwargs=dict(num_layers=2), channel_base=2048,
                      channel_max=64, num_fp16_res=0, magnitude_ema_beta=_sg3_ema_beta()),
        D_kwargs=dict(class_name=SG3_D, c_dim=0, img_resolution=32, img_channels=3,
                      architecture="resnet", channel_base=2048, channel_max=64, num_fp16_res=0,
                      conv_clamp=256, epilogue_kwargs=dict(mbstd_group_size=4))),
    # Extra configurations (tests/data/reference_extra; see the README there).
    "sg2_cond64_gray_orig": dict(
        family="stylegan2", seed=201,
        G_kwargs=dict(class_name=SG2_G, z_dim=32, c_dim=5, w_dim=32, img_resolution=64,
                      img_channels=1, mapping_kwargs=dict(num_layers=2),
                      synthesis_kwargs=dict(channel_base=128, channel_max=8, num_fp16_res=0,
                                            conv_clamp=None, architecture="orig")),
        D_kwargs=dict(class_name=SG2_D, c_dim=5, img_resolution=64, img_channels=1,
                      architecture="orig", channel_base=128, channel_max=8, num_fp16_res=0,
                      conv_clamp=None, epilogue_kwargs=dict(mbstd_group_size=2))),
    "sg2_gray16_resnet_skip": dict(
        family="stylegan2", seed=203,
        G_kwargs=dict(class_name=SG2_G, z_dim=32, c_dim=0, w_dim=32, img_resolution=16,
                      img_channels=1, mapping_kwargs=dict(num_layers=8),
                      synthesis_kwargs=dict(channel_base=256, channel_max=8, num_fp16_res=2,
                                            conv_clamp=256, architecture="resnet")),
        D_kwargs=dict(class_name=SG2_D, c_dim=0, img_resolution=16, img_channels=1,
                      architecture="skip", channel_base=256, channel_max=8, num_fp16_res=2,
                      conv_clamp=256, epilogue_kwargs=dict(mbstd_group_size=4))),
    # Kwargs shaped as the official train.py writes them (empty mapping_kwargs, block_kwargs,
    # fp16_channels_last) with Freeze-D: the first 2 D layers keep weight/bias as buffers.
    "sg2_freezed8_trainkwargs": dict(
        family="stylegan2", seed=205,
        G_kwargs=dict(class_name=SG2_G, z_dim=16, w_dim=16, mapping_kwargs=dict(num_layers=2),
                      synthesis_kwargs=dict(channel_base=64, channel_max=8, num_fp16_res=4,
                                            conv_clamp=256, fp16_channels_last=True),
                      c_dim=2, img_resolution=8, img_channels=3),
        D_kwargs=dict(class_name=SG2_D,
                      block_kwargs=dict(freeze_layers=2, fp16_channels_last=True),
                      mapping_kwargs={}, epilogue_kwargs=dict(mbstd_group_size=4),
                      channel_base=64, channel_max=8, num_fp16_res=4, conv_clamp=256, c_dim=2,
                      img_resolution=8, img_channels=3)),
    # Config R as the official train.py builds it (--cfg=stylegan3-r): 1x1 convolutions,
    # radial filters, G channel_base / channel_max doubled relative to D; scaled down.
    "sg3r_32": dict(
        family="stylegan3", config="R", seed=301,
        G_kwargs=dict(class_name=SG3_G, z_dim=32, c_dim=0, w_dim=32, img_resolution=32,
                      img_channels=3, mapping_kwargs=dict(num_layers=2), channel_base=2 * 128,
                      channel_max=2 * 3, num_fp16_res=0, magnitude_ema_beta=_sg3_ema_beta(),
                      conv_kernel=1, use_radial_filters=True),
        D_kwargs=dict(class_name=SG3_D, c_dim=0, img_resolution=32, img_channels=3,
                      architecture="resnet", channel_base=128, channel_max=4, num_fp16_res=0,
                      conv_clamp=256, epilogue_kwargs=dict(mbstd_group_size=4))),
    "sg3t_cond64_gray": dict(
        family="stylegan3", config="T", seed=303,
        G_kwargs=dict(class_name=SG3_G, z_dim=32, c_dim=3, w_dim=32, img_resolution=64,
                      img_channels=1, mapping_kwargs=dict(num_layers=2), channel_base=96,
                      channel_max=4, num_fp16_res=0, magnitude_ema_beta=_sg3_ema_beta()),
        D_kwargs=dict(class_name=SG3_D, c_dim=3, img_resolution=64, img_channels=1,
                      architecture="resnet", channel_base=96, channel_max=4, num_fp16_res=0,
                      conv_clamp=256, epilogue_kwargs=dict(mbstd_group_size=4))),
    # Path-length phase on the `orig` generator (issue 12): the configuration reported as
    # failing, and the two extremes of the path-length batch (pl_batch_shrink 4 -> one sample,
    # 1 -> the whole batch) with other architectures, depths and widths.
    "sg2_orig16_w64": dict(
        family="stylegan2", seed=1,
        G_kwargs=dict(class_name=SG2_G, z_dim=512, c_dim=0, w_dim=64, img_resolution=16,
                      img_channels=3, mapping_kwargs=dict(num_layers=2),
                      synthesis_kwargs=dict(channel_base=512, channel_max=32, num_fp16_res=0,
                                            conv_clamp=None, architecture="orig")),
        D_kwargs=dict(class_name=SG2_D, c_dim=0, img_resolution=16, img_channels=3,
                      architecture="orig", channel_base=512, channel_max=32, num_fp16_res=0,
                      conv_clamp=None, epilogue_kwargs=dict(mbstd_group_size=4))),
    "sg2_pl_orig8_batch1": dict(
        family="stylegan2", seed=207, pl_batch_shrink=4,
        G_kwargs=dict(class_name=SG2_G, z_dim=32, c_dim=0, w_dim=16, img_resolution=8,
                      img_channels=3, mapping_kwargs=dict(num_layers=1),
                      synthesis_kwargs=dict(channel_base=256, channel_max=16, num_fp16_res=0,
                                            conv_clamp=None, architecture="orig")),
        D_kwargs=dict(class_name=SG2_D, c_dim=0, img_resolution=8, img_channels=3,
                      architecture="skip", channel_base=256, channel_max=16, num_fp16_res=0,
                      conv_clamp=None, epilogue_kwargs=dict(mbstd_group_size=4))),
    "sg2_pl_resnet32_cond_batch4": dict(
        family="stylegan2", seed=209, pl_batch_shrink=1,
        G_kwargs=dict(class_name=SG2_G, z_dim=32, c_dim=3, w_dim=16, img_resolution=32,
                      img_channels=1, mapping_kwargs=dict(num_layers=8),
                      synthesis_kwargs=dict(channel_base=256, channel_max=8, num_fp16_res=2,
                                            conv_clamp=256, architecture="resnet")),
        D_kwargs=dict(class_name=SG2_D, c_dim=3, img_resolution=32, img_channels=1,
                      architecture="orig", channel_base=256, channel_max=8, num_fp16_res=0,
                      conv_clamp=None, epilogue_kwargs=dict(mbstd_group_size=4))),
}

# ---------------------------------------------------------------------------- json texts

LAYOUT = {"images": "NCHW", "conv_weights": "OIHW (as the official state_dict)",
          "ws": "[N, num_ws, w_dim]"}
PICKLE_TEXT = (
    "NAME.pkl: pickle.dump(dict(G, D, G_ema(=G), augment_pipe=None, training_set_kwargs=None)) "
    "of the official persistent modules, as training snapshots are written; the modules embed "
    "their source code, which a safe loader must not execute; in these reference files that "
    "source text is replaced by a one-line placeholder, everything else is as in a real snapshot")
SG2_TEXTS = {
    "images": (
        "io/img_psi* = G.synthesis(ws, noise_mode='const') with the matching io/ws_psi*; "
        "_noise_none: noise_mode='none'; _nonfused: fused_modconv=False; _noise_random: "
        f"torch.manual_seed({NOISE_RANDOM_SEED}) then noise_mode='random' (not reproducible "
        "outside torch; informative only); _conv_clamp0.5: same params with synthesis "
        "conv_clamp=0.5"),
    "style_mixing": (
        "io/ws_mix = ws_psi1.0[0:2] with layers >= io/mix_cutoff taken from ws_psi1.0[2:4]; "
        "io/img_mix its image"),
    "discriminator": (
        "io/d_fake_logits = D(io/img_psi1.0, c); io/d_real_logits = D(io/d_real_img, c)"),
    "intermediates": (
        "inter/G.synthesis.b<res>.0 = x (features) and .1 = img after block b<res>, for sample 0 "
        "at psi 1.0; inter/D.b<res>.0 = x after D block; inter/D.mapping = cmap "
        "(conditional only)"),
    "w_avg_update": (
        "io/w_avg_after = mapping run once in training mode on io/z (and io/c) starting from "
        "io/w_avg_before; beta = mapping w_avg_beta (0.995)"),
}
LOSS_NOTES = (
    "G and D in training mode (so modulated convs use the non-fused path); synthesis called "
    "with noise_mode='const' for determinism; phases run in the order Gmain, Greg, Dmain, Dreg, "
    "each with fresh zero grads; grad/<phase>/<G.|D.><param> are the gradients of that phase's "
    "loss (mean over batch, gain 1) w.r.t. that network's parameters; loss/<phase>/<stat name> "
    "are the per-sample values reported by the official code (Loss/G/loss, Loss/G/reg, "
    "Loss/pl_penalty, Loss/D/loss, Loss/r1_penalty, Loss/D/reg, Loss/scores/*). io/pl_noise is "
    "the exact noise the path-length phase multiplied the image by (= io/pl_randn / "
    "sqrt(H*W)); pl_mean starts at io/pl_mean_before (0) and ends at io/pl_mean_after.")
SG3_TEXTS = {
    "images": (
        "io/img_psi* = G.synthesis(ws) (StyleGAN3 has no noise inputs) with the matching "
        "io/ws_psi*; io/img_psi0.7_transformed: synthesis.input.transform set to io/transform "
        "(= inverse of make_transform(translate=(0.1,-0.05), rotate=10 degrees), as the official "
        "gen_images.py does) "),
    "style_mixing": (
        "io/ws_mix = ws_psi1.0[0:2] with layers >= io/mix_cutoff from ws_psi1.0[2:4]"),
    "discriminator": (
        "networks_stylegan2.Discriminator; io/d_fake_logits = D(io/img_psi1.0, c); "
        "io/d_real_logits = D(io/d_real_img, c)"),
    "intermediates": (
        "inter/G.mapping = ws for sample 0; inter/G.synthesis.<layer> = output of each synthesis "
        "layer for sample 0 at psi 1.0 (before output_scale)"),
    "ema_update": (
        "io/ema_after/<buffer> = buffers after one G(z, c, update_emas=True) in training mode "
        "starting from io/ema_before/<buffer> (w_avg and every magnitude_ema)"),
}


# ---------------------------------------------------------------------------- official code


def _provide_pkg_resources() -> None:
    """The StyleGAN3 ops import `pkg_resources.parse_version` (setuptools, often absent now)."""
    try:
        import pkg_resources  # noqa: F401
    except ImportError:
        import types

        from packaging.version import parse
        sys.modules["pkg_resources"] = types.SimpleNamespace(parse_version=parse)


class Official:
    """The official modules of one clone, imported from `repo` (put first on sys.path)."""

    def __init__(self, repo: pathlib.Path, family: str):
        if not (repo / "training").is_dir():
            raise SystemExit(f"{repo}: not a clone of {SOURCES[family]} (no training/)")
        sys.path.insert(0, str(repo.resolve()))
        _provide_pkg_resources()
        import dnnlib
        import torch
        self.torch, self.dnnlib, self.repo, self.family = torch, dnnlib, repo, family
        wanted = "training.networks_stylegan3" if family == "stylegan3" else "training.networks"
        try:
            __import__(wanted)
        except ImportError as e:
            raise SystemExit(f"{repo}: cannot import {wanted} ({e}); a {family} preset needs "
                             f"a clone of {SOURCES[family]}") from e
        torch.set_num_threads(1)
        torch.use_deterministic_algorithms(True)

    def commit(self) -> str:
        return subprocess.run(["git", "-C", str(self.repo), "rev-parse", "HEAD"], check=True,
                              capture_output=True, text=True).stdout.strip()

    def construct(self, kwargs: dict[str, Any]):
        return self.dnnlib.util.construct_class_by_name(**copy.deepcopy(kwargs))


class _Call:
    """Factory for a torch module that calls `module` with fixed keyword arguments.

    `StyleGAN2Loss` wraps its networks in `misc.ddp_sync`, which wants torch modules; this is
    how the loss phases get `noise_mode='const'` and `force_fp32=True` without touching them.
    """

    @staticmethod
    def make(torch, module, **fixed):
        class Call(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.inner = module

            def forward(self, *args, **kwargs):
                return self.inner(*args, **{**fixed, **kwargs})

        return Call()


@contextlib.contextmanager
def _hooks(named_modules, record):
    """Forward hooks storing each module's output under its name, removed afterwards."""
    handles = [m.register_forward_hook(lambda _m, _i, out, n=name: record.append((n, out)))
               for name, m in named_modules]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _np(t) -> np.ndarray:
    return t.detach().cpu().numpy().copy()


def perturb(off: Official, G, D, seed: int):
    """Moves parameters and EMA buffers away from their initial values; returns the generator."""
    torch = off.torch
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in [*G.parameters(), *D.parameters()]:
            p.add_(0.1 * torch.randn(p.shape, generator=gen))
        G.mapping.w_avg.copy_(0.5 * torch.randn(G.mapping.w_avg.shape, generator=gen))
        for name, b in G.named_buffers():
            if name.endswith("magnitude_ema"):
                b.copy_(0.5 + torch.rand(b.shape, generator=gen))
    return gen


def write_snapshot(off: Official, G, D, path: pathlib.Path) -> None:
    """Pickles G, D, G_ema as official training snapshots do, with placeholder module source."""
    nets = {key: copy.deepcopy(net).eval().requires_grad_(False)
            for key, net in (("G", G), ("D", D), ("G_ema", G))}
    classes = {type(m) for net in nets.values() for m in net.modules()
               if hasattr(type(m), "_orig_module_src")}
    saved = {cls: cls.__dict__["_orig_module_src"] for cls in classes}
    try:
        for cls in classes:
            cls._orig_module_src = PLACEHOLDER_SRC
        data = dict(G=nets["G"], D=nets["D"], G_ema=nets["G_ema"], augment_pipe=None,
                    training_set_kwargs=None)
        with open(path, "wb") as f:
            pickle.dump(data, f)
    finally:
        for cls, src in saved.items():
            cls._orig_module_src = src


def _inputs(off: Official, G_kwargs):
    seeds = np.asarray(SEEDS, np.int64)
    z = np.concatenate([np.random.RandomState(s).randn(1, G_kwargs["z_dim"]) for s in SEEDS])
    z = z.astype(np.float32)
    c_dim = G_kwargs["c_dim"]
    c = np.eye(c_dim, dtype=np.float32)[seeds % c_dim] if c_dim else None
    torch = off.torch
    c_t = torch.from_numpy(c) if c is not None else torch.zeros([len(SEEDS), 0])
    return seeds, z, c, torch.from_numpy(z), c_t


def _mapping(G, z_t, c_t, out):
    out["io/ws_psi1.0"] = G.mapping(z_t, c_t)
    for key, spec in TRUNCATIONS.items():
        out[key] = G.mapping(z_t, c_t, truncation_psi=spec["psi"],
                             truncation_cutoff=spec["cutoff"])


def record_stylegan2(off: Official, G, D, G_kwargs, gen,
                     loss_kwargs: dict[str, Any] | None) -> dict[str, Any]:
    torch = off.torch
    R, C = G_kwargs["img_resolution"], G_kwargs["img_channels"]
    seeds, z, c, z_t, c_t = _inputs(off, G_kwargs)
    real = torch.randn([len(SEEDS), C, R, R], generator=gen).clamp(-1, 1)
    out: dict[str, Any] = {"io/seeds": seeds, "io/z": z}
    if c is not None:
        out["io/c"] = c
    G.eval()
    D.eval()
    synth = lambda ws, **kw: G.synthesis(ws, force_fp32=True, **{"noise_mode": "const", **kw})
    disc = lambda img, c_: D(img, c_, force_fp32=True)
    with torch.no_grad():
        _mapping(G, z_t, c_t, out)
        for key in ("io/ws_psi1.0", *TRUNCATIONS):
            out["io/img" + key[len("io/ws"):]] = synth(out[key])
        ws07 = out["io/ws_psi0.7"]
        out["io/img_psi0.7_noise_none"] = synth(ws07, noise_mode="none")
        out["io/img_psi0.7_nonfused"] = synth(ws07, fused_modconv=False)
        torch.manual_seed(NOISE_RANDOM_SEED)
        out["io/img_psi0.7_noise_random"] = synth(ws07, noise_mode="random")
        ws = out["io/ws_psi1.0"]
        mix = ws[0:2].clone()
        mix[:, MIX_CUTOFF:] = ws[2:4, MIX_CUTOFF:]
        out["io/ws_mix"], out["io/mix_cutoff"] = mix, np.asarray(MIX_CUTOFF, np.int64)
        out["io/img_mix"] = synth(mix)
        out["io/d_fake_logits"] = disc(out["io/img_psi1.0"], c_t)
        out["io/d_real_img"] = real
        out["io/d_real_logits"] = disc(real, c_t)

        record: list = []
        blocks = [(f"b{r}", getattr(G.synthesis, f"b{r}")) for r in G.synthesis.block_resolutions]
        with _hooks(blocks, record):
            synth(ws[:1])
        for name, (x, img) in record:
            out[f"inter/G.synthesis.{name}.0"] = x
            if img is not None:
                out[f"inter/G.synthesis.{name}.1"] = img
        record = []
        named = [(f"b{r}", getattr(D, f"b{r}")) for r in D.block_resolutions]
        if getattr(D, "mapping", None) is not None:
            named.append(("mapping", D.mapping))
        named.append(("b4", D.b4))
        with _hooks(named, record):
            disc(out["io/img_psi1.0"][:1], c_t[:1])
        for name, value in record:
            if isinstance(value, tuple):
                out[f"inter/D.{name}.0"] = value[0]
                if value[1] is not None:
                    out[f"inter/D.{name}.1"] = value[1]
            else:
                out[f"inter/D.{name}"] = value

        clamp_kwargs = copy.deepcopy(G_kwargs)
        clamp_kwargs["synthesis_kwargs"]["conv_clamp"] = 0.5
        torch.manual_seed(0)
        G_clamp = off.construct(clamp_kwargs).eval()
        G_clamp.load_state_dict(G.state_dict())
        out["io/img_psi0.7_conv_clamp0.5"] = G_clamp.synthesis(ws07, noise_mode="const",
                                                               force_fp32=True)

        out["io/w_avg_before"] = G.mapping.w_avg.clone()
        G_train = copy.deepcopy(G).train()
        G_train.mapping(z_t, c_t)
        out["io/w_avg_after"] = G_train.mapping.w_avg.clone()
    if loss_kwargs is not None:
        run_loss_phases(off, G, D, z_t, c_t, real, out, loss_kwargs)
    return out


def run_loss_phases(off: Official, G, D, z_t, c_t, real, out,
                    loss_kwargs: dict[str, Any]) -> None:
    """The four phases of the official StyleGAN2Loss, each from zero grads, in training mode."""
    torch = off.torch
    from torch_utils import training_stats
    from training.loss import StyleGAN2Loss
    G.train()
    D.train()
    for p in [*G.parameters(), *D.parameters()]:
        p.requires_grad_(False)
    loss = StyleGAN2Loss(
        device=torch.device("cpu"), G_mapping=G.mapping,
        G_synthesis=_Call.make(torch, G.synthesis, noise_mode="const", force_fp32=True),
        D=_Call.make(torch, D, force_fp32=True), augment_pipe=None, **loss_kwargs)
    out["io/pl_mean_before"] = loss.pl_mean.clone()
    reports: list = []
    original_report = training_stats.report
    original_randn_like = torch.randn_like
    draws: list = []

    def report(name, value):
        reports.append((name, _np(value)))
        return original_report(name, value)

    def randn_like(*args, **kwargs):
        draws.append(original_randn_like(*args, **kwargs))
        return draws[-1]

    torch.manual_seed(LOSS_SEED)
    training_stats.report = report
    try:
        for phase, net_name, net in (("Gmain", "G", G), ("Greg", "G", G), ("Dmain", "D", D),
                                     ("Dreg", "D", D)):
            reports.clear()
            draws.clear()
            for p in [*G.parameters(), *D.parameters()]:
                p.grad = None
            net.requires_grad_(True)
            torch.randn_like = randn_like
            try:
                loss.accumulate_gradients(phase=phase, real_img=real, real_c=c_t, gen_z=z_t,
                                          gen_c=c_t, sync=True, gain=1)
            finally:
                torch.randn_like = original_randn_like
            net.requires_grad_(False)
            for name, value in reports:
                out[f"loss/{phase}/{name}"] = value
            for name, p in net.named_parameters():
                grad = p.grad if p.grad is not None else torch.zeros_like(p)
                out[f"grad/{phase}/{net_name}.{name}"] = grad
            if phase == "Greg":
                (pl_randn,) = draws
                out["io/pl_randn"] = pl_randn
                out["io/pl_noise"] = pl_randn / np.sqrt(pl_randn.shape[2] * pl_randn.shape[3])
                out["io/pl_mean_after"] = loss.pl_mean.clone()
    finally:
        training_stats.report = original_report
    G.eval()
    D.eval()


def inverse_transform() -> np.ndarray:
    """Inverse of the official gen_images.py `make_transform(translate, angle)` (float64)."""
    angle = np.deg2rad(TRANSFORM["rotate"])
    s, c = np.sin(angle), np.cos(angle)
    tx, ty = TRANSFORM["translate"]
    m = np.array([[c, s, tx], [-s, c, ty], [0.0, 0.0, 1.0]])
    return np.linalg.inv(m)


def record_stylegan3(off: Official, G, D, G_kwargs, gen) -> dict[str, Any]:
    torch = off.torch
    R, C = G_kwargs["img_resolution"], G_kwargs["img_channels"]
    seeds, z, c, z_t, c_t = _inputs(off, G_kwargs)
    real = torch.randn([len(SEEDS), C, R, R], generator=gen).clamp(-1, 1)
    out: dict[str, Any] = {"io/seeds": seeds, "io/z": z}
    if c is not None:
        out["io/c"] = c
    G.eval()
    D.eval()
    disc = lambda img, c_: D(img, c_, force_fp32=True)
    with torch.no_grad():
        _mapping(G, z_t, c_t, out)
        for key in ("io/ws_psi1.0", *TRUNCATIONS):
            out["io/img" + key[len("io/ws"):]] = G.synthesis(out[key])
        ws = out["io/ws_psi1.0"]
        mix = ws[0:2].clone()
        mix[:, MIX_CUTOFF:] = ws[2:4, MIX_CUTOFF:]
        out["io/ws_mix"], out["io/mix_cutoff"] = mix, np.asarray(MIX_CUTOFF, np.int64)
        out["io/img_mix"] = G.synthesis(mix)
        transform = G.synthesis.input.transform
        identity = transform.clone()
        out["io/transform"] = inverse_transform()
        transform.copy_(torch.from_numpy(out["io/transform"]))
        out["io/img_psi0.7_transformed"] = G.synthesis(out["io/ws_psi0.7"])
        transform.copy_(identity)
        out["io/d_fake_logits"] = disc(out["io/img_psi1.0"], c_t)
        out["io/d_real_img"] = real
        out["io/d_real_logits"] = disc(real, c_t)

        out["inter/G.mapping"] = G.mapping(z_t[:1], c_t[:1])
        record: list = []
        names = ["input", *G.synthesis.layer_names]
        with _hooks([(n, getattr(G.synthesis, n)) for n in names], record):
            G.synthesis(ws[:1])
        for name, value in record:
            out[f"inter/G.synthesis.{name}"] = value

        ema_names = [f"synthesis.{n}.magnitude_ema" for n in G.synthesis.layer_names]
        ema_names.append("mapping.w_avg")
        G_train = copy.deepcopy(G).train()
        G_train(z_t, c_t, update_emas=True)
        before, after = dict(G.named_buffers()), dict(G_train.named_buffers())
        for name in ema_names:
            out[f"io/ema_before/{name}"] = before[name].clone()
            out[f"io/ema_after/{name}"] = after[name].clone()
    return out


def make(off: Official, name: str, spec: dict[str, Any], out_dir: pathlib.Path) -> None:
    torch = off.torch
    family, seed = spec["family"], spec["seed"]
    G_kwargs, D_kwargs = spec["G_kwargs"], spec["D_kwargs"]
    torch.manual_seed(seed)
    G = off.construct(G_kwargs)
    D = off.construct(D_kwargs)
    gen = perturb(off, G, D, seed + 1)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_snapshot(off, G, D, out_dir / f"{name}.pkl")

    loss_kwargs = None
    if spec.get("loss", True):
        loss_kwargs = {**LOSS, "pl_batch_shrink": spec.get("pl_batch_shrink",
                                                           LOSS["pl_batch_shrink"])}
    if family == "stylegan2":
        out = record_stylegan2(off, G, D, G_kwargs, gen, loss_kwargs)
    else:
        out = record_stylegan3(off, G, D, G_kwargs, gen)
    state = {**{f"state/G.{k}": v for k, v in G.state_dict().items()},
             **{f"state/D.{k}": v for k, v in D.state_dict().items()}}
    arrays = {k: (_np(v) if isinstance(v, torch.Tensor) else np.asarray(v))
              for k, v in {**state, **out}.items()}
    for k, v in arrays.items():
        if v.dtype == np.float64 and k != "io/transform":
            raise AssertionError(f"{k}: float64")
    np.savez_compressed(out_dir / f"{name}.npz", **arrays)

    meta: dict[str, Any] = {
        "source": SOURCES[family], "commit": off.commit(), "torch": torch.__version__,
        "dtype": "float32", "device": "cpu"}
    if family == "stylegan3":
        meta["config"] = spec["config"]
    meta["G_kwargs"], meta["D_kwargs"] = G_kwargs, D_kwargs
    meta["num_ws"] = int(G.num_ws)
    if family == "stylegan3":
        meta["layer_names"] = list(G.synthesis.layer_names)
    meta["layout"] = LAYOUT
    if family == "stylegan2":
        meta["perturbation"] = (
            f"every trainable parameter += 0.1*randn (torch.Generator seed {seed + 1}), w_avg = "
            "0.5*randn; buffers such as resample_filter and noise_const as constructed")
        meta["truncation"] = TRUNCATIONS
        meta.update(SG2_TEXTS)
        if loss_kwargs is not None:
            meta["loss"] = {
                "cls": "training.loss.StyleGAN2Loss", "augment_pipe": None,
                "style_mixing_prob": loss_kwargs["style_mixing_prob"],
                "r1_gamma": loss_kwargs["r1_gamma"],
                "pl_batch_shrink": loss_kwargs["pl_batch_shrink"],
                "pl_decay": loss_kwargs["pl_decay"], "pl_weight": loss_kwargs["pl_weight"],
                "gain": 1,
                "inputs": ("gen_z = io/z, gen_c = real_c = io/c (or empty), "
                           "real_img = io/d_real_img"),
                "notes": LOSS_NOTES}
    else:
        meta["perturbation"] = (
            f"every trainable parameter += 0.1*randn (torch.Generator seed {seed + 1}); w_avg = "
            "0.5*randn; every magnitude_ema = 0.5 + U(0,1); filters and the input transform "
            "buffer as constructed")
        meta.update(SG3_TEXTS)
    meta["pickle"] = PICKLE_TEXT
    meta["keys"] = {k: list(v.shape) for k, v in arrays.items()}
    (out_dir / f"{name}.json").write_text(json.dumps(meta, indent=1))
    sizes = {s: (out_dir / f"{name}.{s}").stat().st_size for s in ("npz", "pkl", "json")}
    print(f"{name}: {len(arrays)} arrays; " + ", ".join(f"{s} {n / 1e6:.2f} MB"
                                                         for s, n in sizes.items()))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("presets", nargs="*", help=f"preset names: {', '.join(PRESETS)}")
    parser.add_argument("--official_repo", type=pathlib.Path, required=True,
                        help="local clone of NVlabs/stylegan2-ada-pytorch or NVlabs/stylegan3")
    parser.add_argument("--out_dir", type=pathlib.Path, default=None)
    parser.add_argument("--list", action="store_true", help="print the presets and exit")
    parser.add_argument("--name", help="custom configuration: file name stem")
    parser.add_argument("--family", choices=sorted(SOURCES), help="custom: network family")
    parser.add_argument("--config", default="T", help="custom StyleGAN3: config letter (json)")
    parser.add_argument("--G_kwargs", type=json.loads, help="custom: G kwargs (JSON)")
    parser.add_argument("--D_kwargs", type=json.loads, help="custom: D kwargs (JSON)")
    parser.add_argument("--seed", type=int, default=1, help="custom: construction seed")
    parser.add_argument("--no_loss", action="store_true", help="custom StyleGAN2: no loss phases")
    parser.add_argument("--pl_batch_shrink", type=int, default=LOSS["pl_batch_shrink"],
                        help="custom StyleGAN2: path-length batch = 4 seeds // this (1, 2 or 4)")
    args = parser.parse_args(argv)
    if args.list:
        for name, spec in PRESETS.items():
            print(name, json.dumps(spec))
        return
    jobs = []
    for name in args.presets:
        if name not in PRESETS:
            parser.error(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
        jobs.append((name, PRESETS[name]))
    if args.name:
        if not (args.family and args.G_kwargs and args.D_kwargs):
            parser.error("--name needs --family, --G_kwargs and --D_kwargs")
        jobs.append((args.name, dict(family=args.family, config=args.config, seed=args.seed,
                                     G_kwargs=args.G_kwargs, D_kwargs=args.D_kwargs,
                                     loss=not args.no_loss,
                                     pl_batch_shrink=args.pl_batch_shrink)))
    if not jobs or args.out_dir is None:
        parser.error("give presets (or --name ...) and --out_dir")
    families = {spec["family"] for _, spec in jobs}
    if len(families) != 1:
        parser.error("one run handles one family (both official clones use the same package "
                     "names); run StyleGAN2 and StyleGAN3 configurations separately")
    off = Official(args.official_repo, families.pop())
    for name, spec in jobs:
        make(off, name, spec, args.out_dir)


if __name__ == "__main__":
    main()
