"""Notebook API: load a generator, map latents, synthesize, mix, interpolate and blend.

    from flaxgan import sample
    g = sample.load("network-snapshot.pkl")            # official snapshot or flaxgan export
    g = sample.load("celeba32")                        # a bundled model (sample.pretrained())
    images = sample.generate(g, seeds=range(8), truncation_psi=0.7)
    sample.grid(images, cols=4).save("grid.png")

Conventions follow the official scripts: seed -> z is `np.random.RandomState(seed).randn(z_dim)`,
images are float32 NHWC in [-1, 1] (raw, not clamped) and become uint8 as
`clip(x * 127.5 + 128, 0, 255)`. Every network call is jitted and runs in fixed-size batches
split over all local devices (on CPU, `XLA_FLAGS=--xla_force_host_platform_device_count=N`
runs N host programs side by side).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from PIL import Image

from flaxgan import convert, xla_cpu
from flaxgan import pretrained as pretrained_lib
from flaxgan.convert import tf_snapshot, tf_stylegan1
from flaxgan.convert.export import NETWORK_JSON, resolve_network
from flaxgan.convert.export import networks as export_networks
from flaxgan.convert.export import read_network as read_export
from flaxgan.convert.export import write_network as export_variables
from flaxgan.errors import InvalidArgument
from flaxgan.images import grid, to_pil, to_uint8
from flaxgan.models import build_generator
from flaxgan.train import sharding

__all__ = [
    "LoadedGenerator",
    "NETWORK_JSON",
    "load",
    "pretrained",
    "resolve_network",
    "read_export",
    "export_networks",
    "export",
    "export_variables",
    "from_state_dict",
    "seeds_to_z",
    "labels",
    "mapping",
    "synthesize",
    "generate",
    "to_uint8",
    "to_pil",
    "grid",
    "layer_indices",
    "style_mix",
    "interpolate",
    "blend",
    "slerp",
    "input_transform",
    "replicate",
]

DEFAULT_BATCH = 16
STYLEGAN1_GENERATOR = "training.networks_stylegan.G_style"


@dataclasses.dataclass(frozen=True)
class LoadedGenerator:
    """A generator ready for sampling: Flax module + variables + official constructor kwargs.

    Attributes:
      module: the Flax generator (`flaxgan.models.stylegan2.Generator` or StyleGAN3's).
      variables: `{'params': ..., 'buffers': ...}` (buffers hold `w_avg`, `noise_const`, ...).
      kwargs: official constructor kwargs including `class_name`.
      source: where it was loaded from.
    """

    module: nn.Module
    variables: Mapping[str, Any]
    kwargs: Mapping[str, Any]
    source: str = ""

    @property
    def z_dim(self) -> int:
        return self.module.z_dim

    @property
    def c_dim(self) -> int:
        return self.module.c_dim

    @property
    def w_dim(self) -> int:
        return self.module.w_dim

    @property
    def num_ws(self) -> int:
        return self.module.num_ws

    @property
    def img_resolution(self) -> int:
        return self.module.img_resolution

    @property
    def img_channels(self) -> int:
        return self.module.img_channels

    @property
    def params(self) -> Mapping[str, Any]:
        return self.variables["params"]

    @property
    def buffers(self) -> Mapping[str, Any]:
        return self.variables.get("buffers", {})

    @property
    def is_stylegan1(self) -> bool:
        """A StyleGAN (v1) `G_style`, from an official TF snapshot."""
        return self.kwargs.get("class_name") == STYLEGAN1_GENERATOR

    @property
    def w_avg(self) -> np.ndarray:
        """Tracked average of w, `[w_dim]` (the truncation centre)."""
        if self.is_stylegan1:
            return np.asarray(self.buffers["dlatent_avg"])
        return np.asarray(self.buffers["mapping"]["w_avg"])

    @property
    def has_noise(self) -> bool:
        """StyleGAN2 and v1 layers take per-pixel noise; StyleGAN3 has no noise inputs."""
        if self.is_stylegan1:
            return bool(self.module.use_noise)
        paths = jax.tree_util.tree_leaves_with_path(dict(self.variables))
        return any("noise_strength" in jax.tree_util.keystr(p) for p, _ in paths)

    def replace(self, **changes) -> LoadedGenerator:
        return dataclasses.replace(self, **changes)


# ----------------------------------------------------------------------------- loading


def _generator_target(kwargs: Mapping[str, Any]) -> tuple[nn.Module, Any]:
    """The generator official kwargs (with `class_name`) build, and its variables' shapes."""
    module = build_generator(kwargs["class_name"], kwargs)
    target = jax.eval_shape(
        lambda: module.init({"params": jax.random.key(0)}, jnp.zeros([1, module.z_dim]),
                            jnp.zeros([1, module.c_dim]), noise_mode="const"))
    return module, target


class _ExpectedShapes:
    """For `load_snapshot`: network `key`'s official shapes as its kwargs imply them, so that a
    tensor of another shape (a stride-0 bomb) is refused before it is copied. Keeps what it
    built (`built`) for `from_state_dict`."""

    def __init__(self, key: str):
        self.key, self.built = key, None

    def __call__(self, net: str, class_name: str, init_kwargs: dict[str, Any]
                 ) -> dict[str, tuple[int, ...]] | None:
        if net != self.key:
            return None
        try:
            self.built = _generator_target({"class_name": class_name, **init_kwargs})
        except Exception:  # Bad kwargs: `from_state_dict` reports them, as without this check.
            return None
        return convert.official_shapes(self.built[1])


def from_state_dict(kwargs: Mapping[str, Any], parameters: Mapping[str, np.ndarray],
                    buffers: Mapping[str, np.ndarray], source: str = "",
                    _built: tuple[nn.Module, Any] | None = None) -> LoadedGenerator:
    """Builds a generator from official kwargs (with `class_name`) and an official state_dict.

    Raises:
      convert.SnapshotError: a key is missing or unexpected, or a shape does not match.
    """
    try:
        module, target = _built or _generator_target(kwargs)
    except InvalidArgument as e:  # Bad constructor kwargs: name the file they came from.
        raise convert.SnapshotError(f"{source or 'network'}: {e}") from None
    variables = convert.to_flax(parameters, buffers)
    convert.check_against(target, variables, source=source)
    variables = replicate(jax.tree.map(jnp.asarray, variables))
    return LoadedGenerator(module=module, variables=variables, kwargs=dict(kwargs),
                           source=source)


def pretrained() -> list[pretrained_lib.PretrainedModel]:
    """The models bundled with flaxgan (name, resolution, training data, kimg, metrics), each
    loadable offline with `load(name)`."""
    return pretrained_lib.available()


def load(path: str | os.PathLike, key: str = "G_ema") -> LoadedGenerator:
    """Loads a generator from an official `.pkl` snapshot, a flaxgan export directory or the
    name of a bundled model (`pretrained()`).

    Args:
      path: official stylegan2-ada-pytorch / stylegan3 snapshot or official TensorFlow StyleGAN
        / StyleGAN2 snapshot (`.pkl`, read without running any code it contains; see
        `flaxgan.convert.tf_snapshot`), a directory written by `export`, or a bundled model's
        name (`celeba32`; a file or folder of that name takes precedence).
      key: which network of the snapshot ('G_ema', or 'G'); in a TF snapshot's `(G, D, Gs)`,
        'G_ema' is Gs.

    Raises:
      convert.SnapshotError: one line naming the file and the problem.
    """
    path = resolve_network(path)
    name = os.path.basename(path.rstrip("/")) or path
    if os.path.isdir(path):
        kwargs, parameters, buffers = read_export(path, key)
        return from_state_dict(kwargs, parameters, buffers, source=path)

    if tf_snapshot.is_tf_snapshot(path):
        return _load_tf(path, key)
    expected = _ExpectedShapes(key)
    snapshot = convert.load_snapshot(path, expected_shapes=expected)
    record = snapshot.get(key) if isinstance(snapshot, Mapping) else None
    if not isinstance(record, convert.ModuleRecord):
        raise convert.SnapshotError(f"{name}: snapshot has no network {key!r}")
    kwargs = {"class_name": record.class_name, **record.init_kwargs}
    return from_state_dict(kwargs, record.parameters, record.buffers, source=path,
                           _built=expected.built)


def _load_tf(path: str, key: str) -> LoadedGenerator:
    """Generator `key` of an official TF snapshot: StyleGAN (v1) as `stylegan1.G_style` with its
    TF variables, StyleGAN2 converted to stylegan2-ada-pytorch's as `legacy.py` converts it."""
    records = tf_snapshot.load_tf_snapshot(path)
    record = records.get(key)
    if record is None:
        raise convert.SnapshotError(f"{path}: TF snapshot has no network {key!r} (has "
                                    f"{sorted(records)}; a single Network is 'G_ema')")
    if not record.is_generator:
        raise convert.SnapshotError(f"{path}: {key!r} is a discriminator ({record.class_name})")
    if record.family == "stylegan2":
        kwargs = tf_snapshot.stylegan2_kwargs(record, source=path)
        parameters, buffers = tf_snapshot.stylegan2_state_dict(record, source=path)
        return from_state_dict(kwargs, parameters, buffers, source=path,
                               _built=_built_from_file(kwargs, path))
    return _stylegan1_generator(record, path)


def _built_from_file(kwargs: Mapping[str, Any], source: str) -> tuple[nn.Module, Any]:
    """`_generator_target` of kwargs read from a file: whatever they make fail is one line."""
    try:
        return _generator_target(kwargs)
    except InvalidArgument as e:
        raise convert.SnapshotError(f"{source}: {e}") from None
    except (TypeError, ValueError) as e:  # A value of the wrong kind deep in the module.
        raise convert.SnapshotError(
            f"{source}: {kwargs['class_name']}: bad constructor arguments "
            f"({type(e).__name__}: {str(e)[:200]})") from None


def _stylegan1_generator(record: tf_snapshot.TFNetworkRecord, source: str) -> LoadedGenerator:
    """A TF `G_style` record -> `stylegan1.G_style` with its variables, names and shapes
    checked against the module its kwargs build."""
    kwargs = {"class_name": record.class_name, **record.static_kwargs}
    module, target = _built_from_file(kwargs, source)
    try:
        variables = tf_stylegan1.to_flax_checked(record.all_variables(), target, source)
    except convert.SnapshotError:
        raise
    except ValueError as e:  # A name that is both a variable and a scope.
        raise convert.SnapshotError(f"{source}: {e}") from None
    variables = replicate(jax.tree.map(jnp.asarray, variables))
    return LoadedGenerator(module=module, variables=variables, kwargs=kwargs, source=source)


def export(g: LoadedGenerator, directory: str | os.PathLike, key: str = "G_ema") -> str:
    """Writes `g` as `<directory>/network.json` + `<key>.npz` (official names and layouts).

    The npz is an official-format state_dict, so PyTorch users can `load_state_dict` it.
    Returns the directory.
    """
    return export_variables(directory, key, g.kwargs, g.variables)


# ----------------------------------------------------------------------------- latents


def seeds_to_z(g: LoadedGenerator, seeds: Iterable[int]) -> np.ndarray:
    """`[N, z_dim]` float32; row i is `np.random.RandomState(seeds[i]).randn(z_dim)`."""
    seeds = [int(s) for s in seeds]
    z = np.stack([np.random.RandomState(s).randn(g.z_dim) for s in seeds]) if seeds else (
        np.zeros([0, g.z_dim]))
    return z.astype(np.float32)


def labels(g: LoadedGenerator, c: Any, n: int) -> np.ndarray:
    """Labels `[n, c_dim]` from None (unconditional), a class index, indices, or an array."""
    if g.c_dim == 0:
        if c is not None:
            raise InvalidArgument("this generator is unconditional; pass c=None")
        return np.zeros([n, 0], np.float32)
    if c is None:
        raise InvalidArgument(f"this generator is conditional (c_dim={g.c_dim}); "
                              "pass a class index")
    c_arr = np.asarray(c)
    if c_arr.ndim == 2:
        if c_arr.shape != (n, g.c_dim):
            raise InvalidArgument(f"c must be [{n}, {g.c_dim}], got {c_arr.shape}")
        return c_arr.astype(np.float32)
    idx = np.broadcast_to(c_arr.astype(np.int64), [n])
    if np.any(idx < 0) or np.any(idx >= g.c_dim):
        raise InvalidArgument(f"class index must be in [0, {g.c_dim}), got {c}")
    return np.eye(g.c_dim, dtype=np.float32)[idx]


@functools.partial(xla_cpu.jit, static_argnums=0, static_argnames=("truncation_cutoff",))
def _map(module, variables, z, c, truncation_psi, truncation_cutoff=None):
    return module.apply(variables, z, c, truncation_psi, truncation_cutoff,
                        method=lambda m, *a: m.map(*a))


@functools.partial(xla_cpu.jit, static_argnums=0,
                       static_argnames=("noise_mode", "noise_layers", "fused_modconv"))
def _synthesize(module, variables, ws, rng, noise_mode="const", noise_layers=None,
                fused_modconv=None, **kwargs):
    return module.apply(variables, ws, noise_mode=noise_mode, noise_layers=noise_layers,
                        fused_modconv=fused_modconv, rngs={"noise": rng},
                        method=lambda m, w, **k: m.synthesize(w, **k), **kwargs)


@functools.partial(xla_cpu.jit, static_argnums=0, static_argnames=("noise_mode", "noise_layers"))
def _synthesize_v1(module, variables, ws, rng, noise_mode="const", noise_layers=None, **kwargs):
    return module.apply(variables, ws, noise_mode=noise_mode, noise_layers=noise_layers,
                        rngs={"noise": rng}, method=lambda m, w, **k: m.synthesize(w, **k),
                        **kwargs)


def _batch_sharding() -> NamedSharding:
    """Rows split over a 1-D mesh of every local device (data parallel sampling)."""
    return sharding.batch_sharded(sharding.make_mesh(local=True))


def replicate(tree: Any) -> Any:
    """Places a pytree on every local device (the generator's variables)."""
    return sharding.replicate(tree, sharding.make_mesh(local=True))


def _batched(fn, *arrays: np.ndarray, batch_size: int) -> np.ndarray:
    """Applies `fn` to row batches of `arrays`, sharded over the local devices.

    Every call gets the same padded shape (a multiple of the device count), so `fn` compiles
    once; padding rows are dropped from the result.
    """
    n = arrays[0].shape[0]
    sharding = _batch_sharding()
    devices = sharding.mesh.size
    step = -(-min(batch_size, max(n, 1)) // devices) * devices
    outs = []
    for i in range(0, n, step):
        chunk = [a[i:i + step] for a in arrays]
        rows = chunk[0].shape[0]
        chunk = [np.concatenate([c, np.zeros((step - rows, *c.shape[1:]), c.dtype)])
                 for c in chunk]
        outs.append(np.asarray(fn(*jax.device_put(chunk, sharding)))[:rows])
    return np.concatenate(outs) if outs else np.zeros([0])


def mapping(
    g: LoadedGenerator,
    z: np.ndarray,
    c: Any = None,
    truncation_psi: float = 1.0,
    truncation_cutoff: int | None = None,
    batch_size: int = DEFAULT_BATCH,
) -> np.ndarray:
    """z `[N, z_dim]` (+ labels) -> ws `[N, num_ws, w_dim]` with truncation ψ (and cutoff)."""
    z = np.asarray(z, np.float32)
    if z.ndim != 2 or z.shape[1] != g.z_dim:
        raise InvalidArgument(f"z must be [N, {g.z_dim}], got {z.shape}")
    c = labels(g, c, z.shape[0])
    psi = np.float32(truncation_psi)
    fn = lambda zb, cb: _map(g.module, g.variables, zb, cb, psi, truncation_cutoff)
    return _batched(fn, z, c, batch_size=batch_size)


def layer_indices(g: LoadedGenerator, layers: str | Sequence[int] | None) -> tuple[int, ...]:
    """ws indices for 'all', 'none', 'coarse', 'middle', 'fine' or explicit indices.

    StyleGAN2 ws index i drives resolution `2 ** (2 + (i + 1) // 2)` (the last toRGB w shares
    the top resolution), StyleGAN (v1) index i resolution `2 ** (2 + i // 2)`; coarse = 4²–8²,
    middle = 16²–32², fine = 64² and up (StyleGAN paper, sec. 3.1). For StyleGAN3 (no
    resolution per layer) the groups are the thirds of num_ws.
    """
    n = g.num_ws
    if layers is None or (isinstance(layers, str) and layers == "all"):
        return tuple(range(n))
    if isinstance(layers, str):
        if layers == "none":
            return ()
        if layers not in ("coarse", "middle", "fine"):
            raise InvalidArgument(
                f"layers must be all/none/coarse/middle/fine or indices, got {layers!r}")
        if g.kwargs.get("class_name", "").endswith("networks_stylegan3.Generator"):
            bounds = {"coarse": (0, n // 3), "middle": (n // 3, 2 * n // 3),
                      "fine": (2 * n // 3, n)}[layers]
            return tuple(range(*bounds))
        shift = 0 if g.is_stylegan1 else 1
        res = [min(2 ** (2 + (i + shift) // 2), g.img_resolution) for i in range(n)]
        lo, hi = {"coarse": (4, 8), "middle": (16, 32), "fine": (64, 1 << 30)}[layers]
        return tuple(i for i in range(n) if lo <= res[i] <= hi)
    idx = tuple(sorted({int(i) for i in layers}))
    if any(i < 0 or i >= n for i in idx):
        raise InvalidArgument(f"layer indices must be in [0, {n}), got {list(layers)}")
    return idx


def synthesize(
    g: LoadedGenerator,
    ws: np.ndarray,
    noise_mode: str = "const",
    noise_layers: str | Sequence[int] | None = None,
    seed: int = 0,
    batch_size: int = DEFAULT_BATCH,
    fused_modconv: bool | None = None,
    **kwargs,
) -> np.ndarray:
    """ws `[N, num_ws, w_dim]` -> float32 images `[N, H, W, C]`, raw (not clamped).

    Args:
      noise_mode: 'const' (stored noise), 'random' (drawn from `seed`) or 'none'.
      noise_layers: which layers receive noise (see `layer_indices`); None = all.
      kwargs: passed to the synthesis network (e.g. StyleGAN3's `transform`).
    """
    ws = np.asarray(ws, np.float32)
    if ws.ndim != 3 or ws.shape[1:] != (g.num_ws, g.w_dim):
        raise InvalidArgument(f"ws must be [N, {g.num_ws}, {g.w_dim}], got {ws.shape}")
    if kwargs.get("transform") is not None and g.has_noise:
        raise InvalidArgument("transform moves StyleGAN3's input grid; "
                              "this is a StyleGAN2 generator")
    selected = None if noise_layers is None else layer_indices(g, noise_layers)
    if selected is not None and not g.has_noise:
        raise InvalidArgument("this generator has no noise inputs (StyleGAN3); noise_layers "
                         "does not apply")
    keys = iter(jax.random.split(jax.random.key(seed), max(1, -(-ws.shape[0] // batch_size))))
    if g.is_stylegan1:  # No modulated convolutions to fuse.
        if fused_modconv is not None:
            raise InvalidArgument("fused_modconv applies to StyleGAN2 generators only")
        fn = lambda wb: _synthesize_v1(g.module, g.variables, wb, next(keys),
                                       noise_mode=noise_mode, noise_layers=selected, **kwargs)
        return _batched(fn, ws, batch_size=batch_size)
    fn = lambda wb: _synthesize(g.module, g.variables, wb, next(keys), noise_mode=noise_mode,
                                noise_layers=selected, fused_modconv=fused_modconv, **kwargs)
    return _batched(fn, ws, batch_size=batch_size)


# ----------------------------------------------------------------------------- images


def input_transform(translate: tuple[float, float] = (0.0, 0.0),
                    rotate: float = 0.0) -> np.ndarray:
    """StyleGAN3 input-grid transform that translates the image and rotates it by `rotate`
    degrees: the inverse of the official `make_transform`, as its `gen_images.py` sets it.

    Pass it as `synthesize(g, ws, transform=...)` (StyleGAN3 generators only).
    """
    from flaxgan.models.stylegan3 import make_transform

    return np.linalg.inv(make_transform(translate, rotate)).astype(np.float32)


def generate(
    g: LoadedGenerator,
    seeds: Iterable[int],
    truncation_psi: float = 1.0,
    c: Any = None,
    noise_mode: str = "const",
    truncation_cutoff: int | None = None,
    **synthesis_kwargs,
) -> list[Image.Image]:
    """Images for `seeds` with the official seed -> z convention.

    `synthesis_kwargs` go to `synthesize` (e.g. `transform=input_transform(...)` for StyleGAN3).
    """
    ws = mapping(g, seeds_to_z(g, seeds), c, truncation_psi, truncation_cutoff)
    return to_pil(synthesize(g, ws, noise_mode=noise_mode, **synthesis_kwargs))


# ----------------------------------------------------------------------------- latent studies


def style_mix(
    g: LoadedGenerator,
    row_seeds: Sequence[int],
    col_seeds: Sequence[int],
    layers: str | Sequence[int] = "coarse",
    truncation_psi: float = 1.0,
    c: Any = None,
    noise_mode: str = "const",
) -> tuple[Image.Image, dict[tuple[int, int], Image.Image]]:
    """Style mixing (StyleGAN paper, fig. 3): row latents with `layers` taken from columns.

    Returns:
      the grid (top row: column sources, left column: row sources, then the mixes) and the
      tiles `{(row_seed, col_seed): image}`, plus `(seed, seed)` for the sources.
    """
    cols = layer_indices(g, layers)
    seeds = list(dict.fromkeys([*row_seeds, *col_seeds]))
    ws = dict(zip(seeds, mapping(g, seeds_to_z(g, seeds), c, truncation_psi), strict=True))
    pairs = [(r, s) for r in row_seeds for s in col_seeds]
    mixed = np.stack([ws[r] for r, _ in pairs]) if pairs else np.zeros([0, g.num_ws, g.w_dim])
    for k, (_, s) in enumerate(pairs):
        mixed[k, list(cols)] = ws[s][list(cols)]
    all_ws = np.concatenate([np.stack([ws[s] for s in seeds]), mixed])
    images = to_pil(synthesize(g, all_ws, noise_mode=noise_mode))
    tiles = {(s, s): images[i] for i, s in enumerate(seeds)}
    tiles.update({p: images[len(seeds) + k] for k, p in enumerate(pairs)})
    cells = [None, *(tiles[(s, s)] for s in col_seeds)]
    for r in row_seeds:
        cells += [tiles[(r, r)], *(tiles[(r, s)] for s in col_seeds)]
    return grid(cells, cols=len(col_seeds) + 1), tiles


def slerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Spherical interpolation between `a` and `b` `[..., D]` at `t` `[T]` -> `[T, ..., D]`."""
    a_n = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b_n = b / np.linalg.norm(b, axis=-1, keepdims=True)
    omega = np.arccos(np.clip(np.sum(a_n * b_n, axis=-1, keepdims=True), -1.0, 1.0))
    t = np.asarray(t, np.float64).reshape((-1,) + (1,) * a.ndim)
    so = np.sin(omega)
    safe = so > 1e-7  # nearly parallel: fall back to lerp
    wa = np.where(safe, np.sin((1 - t) * omega) / np.where(safe, so, 1), 1 - t)
    wb = np.where(safe, np.sin(t * omega) / np.where(safe, so, 1), t)
    return (wa * a + wb * b).astype(np.float32)


def interpolate(
    g: LoadedGenerator,
    seed_a: int,
    seed_b: int,
    steps: int,
    space: str = "z",
    truncation_psi: float = 1.0,
    c: Any = None,
    noise_mode: str = "const",
) -> list[Image.Image]:
    """`steps` images from seed_a to seed_b: slerp in Z, or lerp in W."""
    if steps < 2:
        raise InvalidArgument(f"steps must be >= 2, got {steps}")
    t = np.linspace(0.0, 1.0, steps)
    z = seeds_to_z(g, [seed_a, seed_b])
    if space == "z":
        ws = mapping(g, slerp(z[0], z[1], t), c, truncation_psi)
    elif space == "w":
        wa, wb = mapping(g, z, c, truncation_psi)
        ws = (wa[None] + t[:, None, None] * (wb - wa)[None]).astype(np.float32)
    else:
        raise InvalidArgument(f"space must be 'z' or 'w', got {space!r}")
    return to_pil(synthesize(g, ws, noise_mode=noise_mode))


def blend(
    g: LoadedGenerator,
    seeds: Sequence[int],
    weights: Sequence[float],
    truncation_psi: float = 1.0,
    c: Any = None,
    noise_mode: str = "const",
) -> tuple[np.ndarray, Image.Image]:
    """Weighted average of the seeds' w latents (weights normalised to sum 1) and its image.

    Returns:
      `(ws [num_ws, w_dim], image)`.
    """
    weights = np.asarray(weights, np.float64)
    if weights.shape != (len(seeds),) or len(seeds) == 0:
        raise InvalidArgument(f"need one weight per seed, got {len(seeds)} seeds, {weights.shape}")
    if abs(weights.sum()) < 1e-12:
        raise InvalidArgument("weights must not sum to zero")
    ws = mapping(g, seeds_to_z(g, seeds), c, truncation_psi)
    blended = np.tensordot(weights / weights.sum(), ws, axes=1).astype(np.float32)
    return blended, to_pil(synthesize(g, blended[None], noise_mode=noise_mode))[0]
