"""Reads official TensorFlow StyleGAN / StyleGAN2 snapshots without TensorFlow, running nothing.

An official TF snapshot (`network-snapshot-*.pkl`, `stylegan2-ffhq-config-f.pkl`, ...) is
`pickle.dump((G, D, Gs))` of `dnnlib.tflib.network.Network`s (NVlabs/stylegan, NVlabs/stylegan2).
A Network pickles as `Network.__new__()` + `__setstate__(state)`, `state` a dict: `version`,
`name`, `static_kwargs` (the build function's keyword arguments), `components` (sub-Networks:
a generator's `mapping` and `synthesis`), `build_module_src` (the Python source of the module
defining the network, which the official `__setstate__` `exec`s), `build_func_name` and
`variables` (the network's own `(name, ndarray)` pairs).

Here the global `dnnlib.tflib.network.Network` resolves to an inert stand-in whose
`__setstate__` keeps the state dict; the build source is never executed nor kept. Every other
global is refused except the numpy array / scalar / dtype records and `EasyDict`, and all the
bounds of `flaxgan.convert.torch_io` apply (pure-Python unpickler, work charged per file byte,
bounded walks). The result is `TFNetworkRecord`s of plain data, each identified by its build
function:

| build function                                    | code                 | flaxgan module  |
|---------------------------------------------------|----------------------|-----------------|
| `G_style` (+ `G_mapping`, `G_synthesis`)          | NVlabs/stylegan      | stylegan1       |
| `D_basic`                                         | NVlabs/stylegan      | stylegan1       |
| `G_main` (+ `G_mapping`, `G_synthesis_stylegan2`) | NVlabs/stylegan2 E/F | stylegan2 (ADA) |
| `D_stylegan2`                                     | NVlabs/stylegan2 E/F | stylegan2 (ADA) |

StyleGAN v1 variables keep their TF names (`flaxgan.convert.tf_stylegan1` maps them);
StyleGAN2 networks become stylegan2-ada-pytorch constructor kwargs and a state_dict exactly as
the official `legacy.py` converts them (`stylegan2_kwargs`, `stylegan2_state_dict`), which the
PyTorch-snapshot path then loads. Every failure is a one-line `SnapshotError` naming the file.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable
from typing import Any

import numpy as np

from flaxgan.convert import snapshot as torch_snapshot
from flaxgan.convert import torch_io
from flaxgan.convert.snapshot import SnapshotError
from flaxgan.convert.torch_io import Budget

__all__ = [
    "TFNetworkRecord",
    "is_tf_snapshot",
    "load_tf_snapshot",
    "stylegan2_kwargs",
    "stylegan2_state_dict",
]

_VERSIONS = (2, 3, 4)  # What the official `Network.__setstate__` accepts.
_V1, _V2 = "training.networks_stylegan", "training.networks_stylegan2"
_MAX_NETWORKS = 64  # Per file: an official snapshot holds 7 (G, D, Gs and their components).
_NETWORK_GLOBAL = ("dnnlib.tflib.network", "Network")
_PLAIN_MODULES = ("numpy", "numpy.core.multiarray", "numpy._core.multiarray",
                  "numpy.core.numeric", "numpy._core.numeric", "collections", "builtins",
                  "dnnlib.util")


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class TFNetworkRecord:
    """One official `dnnlib.tflib.Network`, as plain data.

    Attributes:
      name: the network's name (`G`, `Gs`, `D`, `G_mapping`, ...), its variable scope.
      module: the official module of its build function (`training.networks_stylegan` or
        `training.networks_stylegan2`).
      build_func_name: the bare build function (`G_style`, `G_main`, `D_stylegan2`, ...).
      static_kwargs: the build function's keyword arguments (plain data).
      components: sub-networks by key (`mapping`, `synthesis`).
      variables: the network's own variables by scope-relative name, read-only arrays.
      version: the pickle format version (3: StyleGAN, 4: StyleGAN2).
    """

    name: str
    module: str
    build_func_name: str
    static_kwargs: dict[str, Any]
    components: dict[str, TFNetworkRecord]
    variables: dict[str, np.ndarray]
    version: int

    @property
    def class_name(self) -> str:
        """`module.build_func_name`, as flaxgan's registry names official networks."""
        return f"{self.module}.{self.build_func_name}"

    @property
    def family(self) -> str:
        """'stylegan1' or 'stylegan2'."""
        return "stylegan1" if self.module == _V1 else "stylegan2"

    @property
    def is_generator(self) -> bool:
        return self.build_func_name in ("G_style", "G_main")

    def all_variables(self) -> dict[str, np.ndarray]:
        """Every variable of the network tree by the official `Network.vars` name: own names,
        then each component's prefixed by the component's name (`G_synthesis/4x4/Conv/...`)."""
        out = dict(self.variables)
        for comp in self.components.values():
            out.update((f"{comp.name}/{k}", v) for k, v in comp.all_variables().items())
        return out

    def __repr__(self) -> str:
        return (f"TFNetworkRecord({self.name}: {self.class_name}, "
                f"{len(self.all_variables())} variables, static_kwargs={self.static_kwargs!r})")


def is_tf_snapshot(path: str | os.PathLike) -> bool:
    """Whether `path` looks like a TF snapshot: its first global (within the first 256 bytes
    for the official tuple or a single Network) is `dnnlib.tflib.network.Network`."""
    try:
        with open(path, "rb") as f:
            head = f.read(256)
    except OSError:
        return False
    return b"dnnlib.tflib.network" in head


def load_tf_snapshot(path: str | os.PathLike) -> dict[str, TFNetworkRecord]:
    """Reads an official TF snapshot without TensorFlow and without executing anything in it.

    Args:
      path: a pickled `(G, D, Gs)` tuple (as official training and the released networks
        write them) or a single pickled Network.

    Returns:
      `{'G': G, 'D': D, 'G_ema': Gs}` for the tuple (the key names of PyTorch snapshots); a
      single Network as `{'G_ema': net}` (a generator) or `{'D': net}`.

    Raises:
      SnapshotError: one line naming `path`: unreadable, not a pickle, a global other than
        the Network / numpy records, a malformed Network state, an unknown or unsupported build
        function, more memory or work than the file's size allows.
    """
    return torch_snapshot.read_pickle_file(
        path, _TFUnpickler, lambda raw, budget: _Reader(budget).snapshot(raw),
        what="TF snapshot pickle")


_one_line, _describe, _quote = (torch_snapshot._one_line, torch_snapshot._describe,
                                torch_snapshot._quote)


# ------------------------------------------------------------------------ unpickling


class _NetworkState:
    """Stands in for `dnnlib.tflib.network.Network`: pickle's NEWOBJ creates it without
    arguments and BUILD hands it the state, which it keeps (the official `__setstate__` would
    `exec` the embedded source and build a TF graph)."""

    __slots__ = ("state",)

    def __new__(cls, *args: Any, **kwargs: Any) -> _NetworkState:
        if args or kwargs:
            raise SnapshotError("Network record with constructor arguments")
        return super().__new__(cls)

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise SnapshotError(f"Network state is a {type(state).__name__}, not a dict")
        self.state = state


# numpy's array, scalar and dtype records and the plain containers, as the PyTorch reader
# resolves them; no torch global.
_GLOBALS: dict[tuple[str, str], Any] = {
    key: value for key, value in torch_snapshot._GLOBALS.items() if key[0] in _PLAIN_MODULES}
_GLOBALS[_NETWORK_GLOBAL] = _NetworkState


class _TFUnpickler(torch_io.RestrictedUnpickler):
    """Resolves only `_GLOBALS`."""

    def find_class(self, module: str, name: str) -> Any:
        found = _GLOBALS.get((module, name)) if isinstance(module, str) and isinstance(
            name, str) else None
        if found is None:
            raise SnapshotError(f"refuses global {_quote(f'{module}.{name}')} "
                                "(not part of an official TF snapshot)")
        return found


# ------------------------------------------------------------------------ interpretation

# Top-level build function -> (official module, {component key: (scope, build function)}).
_BUILD_FUNCS: dict[str, tuple[str, dict[str, tuple[str, str]]]] = {
    "G_style": (_V1, {"mapping": ("G_mapping", "G_mapping"),
                      "synthesis": ("G_synthesis", "G_synthesis")}),
    "D_basic": (_V1, {}),
    "G_main": (_V2, {"mapping": ("G_mapping", "G_mapping"),
                     "synthesis": ("G_synthesis", "G_synthesis_stylegan2")}),
    "D_stylegan2": (_V2, {}),
}
# Official build functions flaxgan does not convert as a top-level network, and why.
_UNSUPPORTED = {
    "G_synthesis_stylegan_revised": "StyleGAN2 configs B-D, progressive growing",
    "D_stylegan": "StyleGAN2 configs B-D, progressive growing",
    "D_main": "a StyleGAN2-ADA TensorFlow discriminator",
    **{f: "a sub-network alone; load the snapshot of its whole generator" for f in (
        "G_mapping", "G_synthesis", "G_synthesis_stylegan2")},
}
_STATE_KEYS = ("version", "name", "static_kwargs", "build_module_src", "build_func_name",
               "variables")


def _supported_list() -> str:
    return ("G_style / D_basic (StyleGAN), G_main with G_synthesis_stylegan2 / D_stylegan2 "
            "(StyleGAN2 configs E, F)")


class _Reader:
    """Unpickled Networks -> `TFNetworkRecord`s: each Network once (memoised by id), its
    structure checked, kwargs converted by the PyTorch reader's bounded walk."""

    def __init__(self, budget: Budget):
        self._budget = budget
        self._plain = torch_snapshot._Interpreter(budget, None)
        self._records: dict[int, TFNetworkRecord] = {}
        self._open: set[int] = set()

    def snapshot(self, raw: Any) -> dict[str, TFNetworkRecord]:
        """The unpickled top level -> `{'G', 'D', 'G_ema'}` or a single network's entry."""
        if isinstance(raw, _NetworkState):
            net = self.network(raw, None, "network", 1)
            return {"G_ema" if net.is_generator else "D": net}
        if not (isinstance(raw, tuple) and len(raw) == 3
                and all(isinstance(n, _NetworkState) for n in raw)):
            raise SnapshotError(f"top level is a {type(raw).__name__}, not a Network or a "
                                "(G, D, Gs) tuple of Networks")
        nets = {key: self.network(n, None, key, 1)
                for key, n in zip(("G", "D", "G_ema"), raw, strict=True)}
        for key, want in (("G", True), ("D", False), ("G_ema", True)):
            if nets[key].is_generator != want:
                raise SnapshotError(f"{key} is a {nets[key].build_func_name}, not a "
                                    f"{'generator' if want else 'discriminator'}")
        if nets["G"].module != nets["D"].module or nets["G"].module != nets["G_ema"].module:
            raise SnapshotError("G, D and Gs come from different StyleGAN versions")
        return nets

    def network(self, obj: _NetworkState, expected: tuple[str, str, str] | None, where: str,
                depth: int) -> TFNetworkRecord:
        """One Network (and its components); `expected` = (module, scope, build function) that
        its parent implies, or None for a top-level network."""
        self._budget.visit(depth, where)
        key = id(obj)
        if key in self._open:
            raise SnapshotError(f"{where}: a Network that is its own component")
        if key not in self._records:
            if len(self._records) >= _MAX_NETWORKS:
                raise SnapshotError(f"more than {_MAX_NETWORKS} Networks")
            self._open.add(key)
            self._records[key] = self._convert(obj, expected, where, depth)
            self._open.discard(key)
        record = self._records[key]
        if expected is not None and record.build_func_name != expected[2]:  # Shared elsewhere.
            raise SnapshotError(f"{where}: component is a {record.build_func_name}, expected "
                                f"{expected[2]!r}")
        return record

    def _convert(self, obj: _NetworkState, expected: tuple[str, str, str] | None, where: str,
                 depth: int) -> TFNetworkRecord:
        state = getattr(obj, "state", None)
        if state is None:
            raise SnapshotError(f"{where}: Network record without state")
        missing = [k for k in _STATE_KEYS if k not in state]
        if missing:
            raise SnapshotError(f"{where}: Network state has no {missing[0]!r} "
                                f"(has {sorted(map(str, state))[:10]})")
        version, name, func = state["version"], state["name"], state["build_func_name"]
        if type(version) is not int or version not in _VERSIONS:
            raise SnapshotError(f"{where}: Network format version {str(version)[:20]}, "
                                f"expected one of {list(_VERSIONS)}")
        if not isinstance(name, str) or not isinstance(func, str):
            raise SnapshotError(f"{where}: Network name / build_func_name is not a string")
        if not isinstance(state["build_module_src"], str):  # Checked, never executed.
            raise SnapshotError(f"{where}: Network build_module_src is not a string")
        where = f"{where} ({name})" if name != where else where
        module, comps = _build_func(func, expected, where)
        kwargs = self._plain.plain(state["static_kwargs"], depth + 1)
        if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
            raise SnapshotError(f"{where}: static_kwargs is not a dict of named arguments")
        components = state.get("components") or {}
        if not isinstance(components, dict) or set(components) != set(comps):
            got = sorted(map(str, components)) if isinstance(components, dict) else components
            raise SnapshotError(f"{where}: {func} has components {str(got)[:100]}, "
                                f"expected {sorted(comps)}")
        children = {}
        for key, sub in components.items():
            if not isinstance(sub, _NetworkState):
                raise SnapshotError(f"{where}: component {key!r} is a {type(sub).__name__}, "
                                    "not a Network")
            child = self.network(sub, comps[key], f"{where}.{key}", depth + 1)
            if child.name != comps[key][1]:  # Its variables are named after it.
                raise SnapshotError(f"{where}: component {key!r} is named "
                                    f"{_quote(child.name)}, expected {comps[key][1]!r}")
            children[key] = child
        return TFNetworkRecord(name=name, module=module, build_func_name=func,
                               static_kwargs=kwargs, components=children,
                               variables=_variables(state["variables"], where),
                               version=version)


def _build_func(func: str, expected: tuple[str, str, str] | None, where: str
                ) -> tuple[str, dict[str, tuple[str, str, str]]]:
    """The official module of build function `func` and its components' `(module, scope,
    build function)` by key.

    Raises:
      SnapshotError: an unknown or unsupported build function, or a component other than the
        one its parent implies.
    """
    if expected is not None:
        module, _, want = expected
        if func != want:
            raise SnapshotError(f"{where}: build function {_quote(func)}, expected {want!r} "
                                "(other sub-networks are StyleGAN2 configs B-D or "
                                "StyleGAN2-ADA, not supported)")
        return module, {}
    if func in _UNSUPPORTED:
        raise SnapshotError(f"{where}: unsupported build function {_quote(func)} "
                            f"({_UNSUPPORTED[func]}); supported: {_supported_list()}")
    if func not in _BUILD_FUNCS:
        raise SnapshotError(f"{where}: unknown build function {_quote(func)}; supported: "
                            f"{_supported_list()}")
    module, comps = _BUILD_FUNCS[func]
    return module, {key: (module, *spec) for key, spec in comps.items()}


def _variables(pairs: Any, where: str) -> dict[str, np.ndarray]:
    """The state's `variables` list of `(name, ndarray)` -> read-only arrays by name."""
    if not isinstance(pairs, list | tuple):
        raise SnapshotError(f"{where}: variables is a {type(pairs).__name__}, not a list")
    out: dict[str, np.ndarray] = {}
    for pair in pairs:
        ok = (isinstance(pair, tuple | list) and len(pair) == 2 and isinstance(pair[0], str)
              and isinstance(pair[1], np.ndarray | np.generic))
        if not ok:
            raise SnapshotError(f"{where}: variables hold a {type(pair).__name__} entry, not "
                                "(name, array)")
        name, value = pair[0], np.asarray(pair[1])
        if value.dtype.kind not in "fiub":
            raise SnapshotError(f"{where}: variable {_quote(name)} has dtype {value.dtype}, "
                                "not a number")
        if name in out:
            raise SnapshotError(f"{where}: variable {_quote(name)} appears twice")
        if not value.dtype.isnative:  # Otherwise kept as unpickled: no second copy.
            value = value.astype(value.dtype.newbyteorder("="))
        value.flags.writeable = False  # Records are frozen; copy to modify.
        out[name] = value
    return out


# ------------------------------------------------------------------------ StyleGAN2 -> PyTorch

# stylegan2-ada-pytorch classes the converted networks are, as `legacy.py` builds them.
SG2_GENERATOR = "training.networks.Generator"
SG2_DISCRIMINATOR = "training.networks.Discriminator"


def _where(record: TFNetworkRecord, source: str) -> str:
    return f"{source}: {record.name}" if source else record.name


def _kwarg_reader(record: TFNetworkRecord, source: str
                  ) -> tuple[Callable[..., Any], Callable[[], None]]:
    """`get(name, default)` reading `record.static_kwargs` (None -> default), and `finish()`
    refusing any kwarg not read, as `legacy.py` refuses unknown TF kwargs."""
    kwargs, known = record.static_kwargs, set()

    def get(name: str, default: Any = None) -> Any:
        known.add(name)
        value = kwargs.get(name)
        return default if value is None else value

    def finish() -> None:
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise SnapshotError(f"{_where(record, source)}: unknown TensorFlow kwarg "
                                f"{_quote(unknown[0])} "
                                f"of {record.build_func_name} (legacy.py refuses it too)")

    return get, finish


def _require(where: str, get: Callable[..., Any], name: str, value: Any) -> None:
    """A TF kwarg that stylegan2-ada-pytorch cannot express unless it has its default."""
    got = get(name, value)
    if got != value:
        raise SnapshotError(f"{where}: {name}={str(got)[:40]} has no stylegan2-ada-pytorch "
                            f"equivalent (only {value!r} converts)")


def _unconditional(where: str, get: Callable[..., Any]) -> None:
    """TF StyleGAN2 conditions G by concatenating embedded labels to z before normalising both,
    and D by a label-selected output; stylegan2-ada-pytorch does neither (legacy.py looks
    for its own `LabelEmbed` variables and fails)."""
    if get("label_size", 0):
        raise SnapshotError(f"{where}: conditional TF StyleGAN2 networks (label_size="
                            f"{str(get('label_size'))[:20]}) have no stylegan2-ada-pytorch "
                            "equivalent")


def stylegan2_kwargs(record: TFNetworkRecord, source: str = "") -> dict[str, Any]:
    """stylegan2-ada-pytorch constructor kwargs (with `class_name`) of a TF StyleGAN2 `G_main`
    or `D_stylegan2`, as `legacy.py` converts them (`channel_base = 2·fmap_base`, ...).

    Where `legacy.py` would build a network that computes something else, the TF semantics win:
    D's minibatch-stddev group defaults to TF's 4 (legacy.py: the whole batch; the same for
    batches of at most 4), a TF group size <= 1 disables the layer, and the mapping width
    defaults to TF's 512 (legacy.py: w_dim, which fails to load when they differ).

    Args:
      record: the network.
      source: the file, for error messages.

    Raises:
      SnapshotError: not a StyleGAN2 network, an unknown kwarg, or one without equivalent.
    """
    if record.class_name == f"{_V2}.G_main":
        return _generator_kwargs(record, source)
    if record.class_name == f"{_V2}.D_stylegan2":
        return _discriminator_kwargs(record, source)
    raise SnapshotError(f"{_where(record, source)}: {record.class_name} is not a TF StyleGAN2 "
                        "network")


def _generator_kwargs(record: TFNetworkRecord, source: str) -> dict[str, Any]:
    get, finish = _kwarg_reader(record, source)
    where = _where(record, source)
    _unconditional(where, get)
    for name, value in (("fmap_decay", 1.0), ("fmap_min", 1), ("normalize_latents", True),
                        ("dtype", "float32"), ("mapping_func", "G_mapping"),
                        ("synthesis_func", "G_synthesis_stylegan2")):
        _require(where, get, name, value)
    for ignored in ("truncation_psi", "truncation_cutoff", "truncation_psi_val",
                    "truncation_cutoff_val", "style_mixing_prob", "structure",
                    "randomize_noise", "fused_modconv"):
        get(ignored)  # Sampling-time and graph options: no effect on the converted network.
    # TF StyleGAN2 names the W EMA `dlatent_avg_beta`, StyleGAN2-ADA's TF code `w_avg_beta`.
    beta = get("w_avg_beta", get("dlatent_avg_beta", 0.995))
    kwargs = {
        "class_name": SG2_GENERATOR,
        "z_dim": get("latent_size", 512),
        "c_dim": 0,
        "w_dim": get("dlatent_size", 512),
        "img_resolution": get("resolution", 1024),
        "img_channels": get("num_channels", 3),
        "mapping_kwargs": {
            "num_layers": get("mapping_layers", 8),
            "embed_features": None,
            "layer_features": get("mapping_fmaps", 512),
            "activation": get("mapping_nonlinearity", "lrelu"),
            "lr_multiplier": get("mapping_lrmul", 0.01),
            "w_avg_beta": beta,
        },
        "synthesis_kwargs": {
            "channel_base": _channel_base(where, get),
            "channel_max": get("fmap_max", 512),
            "num_fp16_res": get("num_fp16_res", 0),
            "conv_clamp": get("conv_clamp"),
            "architecture": get("architecture", "skip"),
            "resample_filter": _taps(where, get),
            "use_noise": get("use_noise", True),
            "activation": get("nonlinearity", "lrelu"),
        },
    }
    get("label_fmaps")
    finish()
    return kwargs


def _channel_base(where: str, get: Callable[..., Any]) -> int:
    """TF's `nf(stage) = fmap_base / 2**stage` at resolution `2**(stage + 1)` is PyTorch's
    `channel_base / resolution` with `channel_base = 2·fmap_base`."""
    base = get("fmap_base", 16 << 10)
    if isinstance(base, bool) or not isinstance(base, int):
        raise SnapshotError(f"{where}: fmap_base={str(base)[:40]} is not an integer")
    return 2 * base


_MAX_TAPS = 64


def _taps(where: str, get: Callable[..., Any]) -> list[float]:
    """`resample_kernel`: the FIR filter taps (default [1, 3, 3, 1])."""
    taps = get("resample_kernel", [1, 3, 3, 1])
    ok = (isinstance(taps, list | tuple) and 0 < len(taps) <= _MAX_TAPS
          and all(isinstance(t, int | float) and not isinstance(t, bool) for t in taps))
    if not ok:
        raise SnapshotError(f"{where}: resample_kernel={str(taps)[:40]}: expected a list of at "
                            f"most {_MAX_TAPS} filter taps")
    return list(taps)


def _discriminator_kwargs(record: TFNetworkRecord, source: str) -> dict[str, Any]:
    get, finish = _kwarg_reader(record, source)
    where = _where(record, source)
    _unconditional(where, get)
    for name, value in (("fmap_decay", 1.0), ("fmap_min", 1), ("dtype", "float32")):
        _require(where, get, name, value)
    get("structure")
    activation = get("nonlinearity", "lrelu")
    group = get("mbstd_group_size", 4)
    features = get("mbstd_num_features", 1)
    kwargs = {
        "class_name": SG2_DISCRIMINATOR,
        "c_dim": 0,
        "img_resolution": get("resolution", 1024),
        "img_channels": get("num_channels", 3),
        "architecture": get("architecture", "resnet"),
        "channel_base": _channel_base(where, get),
        "channel_max": get("fmap_max", 512),
        "num_fp16_res": get("num_fp16_res", 0),
        "conv_clamp": get("conv_clamp"),
        "cmap_dim": None,
        "block_kwargs": {
            "activation": activation,
            "resample_filter": _taps(where, get),
            "freeze_layers": get("freeze_layers", 0),
        },
        "mapping_kwargs": {},
        "epilogue_kwargs": {
            "mbstd_group_size": group,
            "mbstd_num_channels": features if isinstance(group, int) and group > 1 else 0,
            "activation": activation,
        },
    }
    for unused in ("mapping_layers", "mapping_fmaps", "mapping_lrmul"):
        get(unused)  # The label mapping of a conditional D (refused above).
    finish()
    return kwargs


# TF variable (the `Network.vars` name) -> (official state_dict name, layout function, buffer?).
# Layouts as `legacy.py`: TF conv kernels are HWIO, PyTorch's OIHW; TF's transposed
# (up-sampling) convolutions take the kernel flipped; dense weights are `[in, out]`, PyTorch's
# `[out, in]`; the style bias is stored minus its initial 1; `const` and noise drop their batch
# (and channel) axes.
_Layout = Callable[[np.ndarray], np.ndarray]


def _oihw(w: np.ndarray) -> np.ndarray:
    return w.transpose(3, 2, 0, 1)


def _flipped_oihw(w: np.ndarray) -> np.ndarray:
    return w[::-1, ::-1].transpose(3, 2, 0, 1)


def _same(x: np.ndarray) -> np.ndarray:
    return x


def _rules(table: list[tuple[str, str, _Layout]]) -> list[tuple[re.Pattern, str, _Layout]]:
    return [(re.compile(pattern), target, layout) for pattern, target, layout in table]


_LAYER_VARS = r"(weight|bias|noise_strength|mod_weight|mod_bias)"
_G_RULES = _rules([
    (r"dlatent_avg", "mapping.w_avg", _same),
    (r"G_mapping/Dense(\d+)/weight", r"mapping.fc\1.weight", np.transpose),
    (r"G_mapping/Dense(\d+)/bias", r"mapping.fc\1.bias", _same),
    (r"G_synthesis/4x4/Const/const", "synthesis.b4.const", lambda x: x[0]),
    (r"G_synthesis/4x4/Conv/weight", "synthesis.b4.conv1.weight", _oihw),
    (r"G_synthesis/(\d+)x\1/Conv0_up/weight", r"synthesis.b\1.conv0.weight", _flipped_oihw),
    (r"G_synthesis/(\d+)x\1/Conv1/weight", r"synthesis.b\1.conv1.weight", _oihw),
    (r"G_synthesis/(\d+)x\1/ToRGB/weight", r"synthesis.b\1.torgb.weight", _oihw),
    (r"G_synthesis/(\d+)x\1/Skip/weight", r"synthesis.b\1.skip.weight", _flipped_oihw),
])
_D_RULES = _rules([
    (r"(\d+)x\1/FromRGB/(weight|bias)", r"b\1.fromrgb.\2", None),
    (r"(\d+)x\1/Conv0/(weight|bias)", r"b\1.conv0.\2", None),
    (r"(\d+)x\1/Conv1_down/(weight|bias)", r"b\1.conv1.\2", None),
    (r"(\d+)x\1/Skip/weight", r"b\1.skip.weight", _oihw),
    (r"4x4/Conv/(weight|bias)", r"b4.conv.\1", None),
    (r"4x4/Dense0/(weight|bias)", r"b4.fc.\1", None),
    (r"Output/(weight|bias)", r"b4.out.\1", None),
])
_G_LAYERS = {"Conv": "conv1", "Conv0_up": "conv0", "Conv1": "conv1", "ToRGB": "torgb"}
_G_LAYER_VAR = re.compile(r"G_synthesis/(\d+)x\1/(Conv|Conv0_up|Conv1|ToRGB)/" + _LAYER_VARS)
_NOISE = re.compile(r"G_synthesis/noise(\d+)")
_BUFFERS = re.compile(r"(^|\.)(w_avg|noise_const)$")
_DROPPED = ("lod",)  # StyleGAN2's G keeps a `lod` variable that nothing reads.


def _noise_target(index: int) -> str:
    """TF's per-layer `noise<i>` -> the layer it feeds: 0 is 4x4's conv, then each resolution
    R's `Conv0_up` (odd i) and `Conv1` (even i), R = 2**((i + 5) // 2)."""
    if index == 0:
        return "synthesis.b4.conv1.noise_const"
    res = 2 ** ((index + 5) // 2)
    return f"synthesis.b{res}.{'conv0' if index % 2 else 'conv1'}.noise_const"


def _generator_entry(name: str, value: np.ndarray) -> tuple[str, np.ndarray] | None:
    """One G variable -> its state_dict entry; None when `name` is not a G_main variable."""
    if (m := _G_LAYER_VAR.fullmatch(name)) and m.group(3) != "weight":
        layer = f"synthesis.b{m.group(1)}.{_G_LAYERS[m.group(2)]}"
        kind = m.group(3)
        if kind == "mod_weight":
            return f"{layer}.affine.weight", value.T
        if kind == "mod_bias":
            return f"{layer}.affine.bias", value + 1
        return f"{layer}.{kind}", value
    if m := _NOISE.fullmatch(name):
        return (_noise_target(int(m.group(1))), value[0, 0]) if value.ndim == 4 else None
    for pattern, target, layout in _G_RULES:
        if m := pattern.fullmatch(name):
            return m.expand(target), layout(value)
    return None


def _discriminator_entry(name: str, value: np.ndarray) -> tuple[str, np.ndarray] | None:
    """One D variable -> its state_dict entry; None when `name` is not a D_stylegan2 variable."""
    for pattern, target, layout in _D_RULES:
        if m := pattern.fullmatch(name):
            if layout is None:  # weight: conv kernel (4-D) or dense (2-D); bias unchanged.
                layout = _oihw if value.ndim == 4 else np.transpose if value.ndim == 2 else _same
            return m.expand(target), layout(value)
    return None


def stylegan2_state_dict(record: TFNetworkRecord, source: str = ""
                         ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The stylegan2-ada-pytorch `(parameters, buffers)` of a TF StyleGAN2 `G_main` or
    `D_stylegan2`, named and laid out as `legacy.py` converts them (without the
    `resample_filter` buffers, which flaxgan recomputes). Shapes are checked by the caller
    against the network `stylegan2_kwargs` builds.

    Raises:
      SnapshotError: a variable no official StyleGAN2 network has, or of the wrong rank.
    """
    entry = {f"{_V2}.G_main": _generator_entry,
             f"{_V2}.D_stylegan2": _discriminator_entry}.get(record.class_name)
    if entry is None:
        raise SnapshotError(f"{_where(record, source)}: {record.class_name} is not a TF "
                            "StyleGAN2 network")
    parameters: dict[str, np.ndarray] = {}
    buffers: dict[str, np.ndarray] = {}
    for name, value in record.all_variables().items():
        if name in _DROPPED:
            continue
        try:
            converted = entry(name, value)
        except (ValueError, IndexError):  # A transposition or index of the wrong rank.
            converted = None
        if converted is None:
            raise SnapshotError(f"{_where(record, source)}: unexpected variable {_quote(name)} "
                                f"of shape {value.shape} in {record.build_func_name}")
        target, array = converted
        # A fresh C-ordered float32 copy (np.ascontiguousarray would make scalars 1-D).
        (buffers if _BUFFERS.search(target) else parameters)[target] = np.array(
            array, np.float32, order="C")
    return parameters, buffers
