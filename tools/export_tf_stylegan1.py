r"""Writes a flaxgan StyleGAN (v1) export as an official TensorFlow snapshot `(G, D, Gs)`.

    python -m tools.export_tf_stylegan1 \
        --network=runs/celeba256_v1/snapshots/network-snapshot-006600 \
        --official_repo=third_party/stylegan --out=network-snapshot-006600.pkl

The official format (NVlabs/stylegan `misc.save_pkl((G, D, Gs))`) is a pickle of
`dnnlib.tflib.network.Network`s. A Network pickles as NEWOBJ + its state dict: `version` 3,
`name` (`G`, `D`, `Gs`; components `G_mapping`, `G_synthesis`), `static_kwargs` (the build
function's keyword arguments), `components`, `build_module_src`, `build_func_name` (`G_style`,
`G_mapping`, `G_synthesis`, `D_basic`) and `variables` (own `(scope-relative name, array)`
pairs in official layouts, `flaxgan.convert.tf_stylegan1.from_flax`). The official
`Network.__setstate__` executes `build_module_src`, the source of `training/networks_stylegan.py`:
flaxgan ships no official code, so it is read from your clone (`--official_repo`), exactly as
the official code would embed it. `dnnlib.tflib.network.Network` is written as a pickle global
without importing anything official.

Components follow the official `G_style`: `G_synthesis` gets every kwarg except `G_style`'s own
(truncation, `dlatent_avg_beta`, `style_mixing_prob`), `G_mapping` the same plus
`dlatent_broadcast` = the synthesis network's number of styles. `flaxgan.sample.load` reads the
result back (`flaxgan.convert.tf_snapshot`); `tests/flaxgan/test_export_tf_stylegan1.py` checks
that an official snapshot read and written again keeps every name, kwarg and variable.
"""

from __future__ import annotations

import argparse
import copyreg
import io
import os
import pathlib
import pickle
from collections.abc import Mapping
from typing import Any

import numpy as np

from flaxgan import convert
from flaxgan.convert import export, tf_stylegan1
from flaxgan.models import build_generator

__all__ = ["network_state", "write_snapshot", "export_snapshot", "G_STYLE_OWN_KWARGS"]

VERSION = 3  # `Network.__getstate__` of NVlabs/stylegan.
MODULE = "training.networks_stylegan"
# Keyword arguments `G_style` consumes itself; the rest go on to its components.
G_STYLE_OWN_KWARGS = ("truncation_psi", "truncation_cutoff", "truncation_psi_val",
                      "truncation_cutoff_val", "dlatent_avg_beta", "style_mixing_prob")
_NETWORK_GLOBAL = b"dnnlib.tflib.network\nNetwork\n"


class _Network:
    """A `dnnlib.tflib.network.Network` to pickle: NEWOBJ of the official class + BUILD(state)."""

    def __init__(self, state: dict[str, Any]):
        self.state = state

    def __reduce_ex__(self, protocol: int):
        return copyreg.__newobj__, (_Network,), self.state


class _Pickler(pickle._Pickler):  # the Python pickler: its globals can be written by name
    """Writes `_Network` as the official global `dnnlib.tflib.network.Network`."""

    def save_global(self, obj: Any, name: str | None = None) -> None:
        if obj is _Network:
            self.write(pickle.GLOBAL + _NETWORK_GLOBAL)
            self.memoize(obj)
            return
        super().save_global(obj, name)


def _plain(x: Any) -> Any:
    """JSON-like kwargs as the official keeps them (tuples -> lists, numpy -> Python)."""
    if isinstance(x, Mapping):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_plain(v) for v in x]
    return x.item() if isinstance(x, np.generic) else x


def network_state(name: str, class_name: str, kwargs: Mapping[str, Any],
                  tf_vars: Mapping[str, np.ndarray], module_src: str) -> _Network:
    """The official Network of a v1 generator (`G_style`, with its components) or
    discriminator (`D_basic`).

    Args:
      name: `G`, `Gs` or `D`.
      class_name: `training.networks_stylegan.G_style` or `....D_basic`.
      kwargs: the official constructor kwargs (without `class_name`).
      tf_vars: every variable by official name (`tf_stylegan1.from_flax`), official layouts.
      module_src: the source of `training/networks_stylegan.py`.
    """
    func = class_name.rsplit(".", 1)[-1]
    if not class_name.startswith(MODULE + ".") or func not in ("G_style", "D_basic"):
        raise ValueError(f"{class_name}: not a StyleGAN (v1) network")
    kwargs = _plain(dict(kwargs))

    def state(net_name, build_func, static_kwargs, variables, components=None):
        return _Network({
            "version": VERSION, "name": net_name, "static_kwargs": static_kwargs,
            "components": components or {}, "build_module_src": module_src,
            "build_func_name": build_func,
            "variables": [(k, np.asarray(v, np.float32)) for k, v in variables.items()]})

    if func == "D_basic":
        return state(name, func, kwargs, tf_vars)
    parts: dict[str, dict[str, np.ndarray]] = {"": {}, "G_mapping": {}, "G_synthesis": {}}
    for var_name, value in tf_vars.items():
        scope, _, rest = var_name.partition("/")
        if scope in parts and rest:
            parts[scope][rest] = value
        else:
            parts[""][var_name] = value
    rest = {k: v for k, v in kwargs.items() if k not in G_STYLE_OWN_KWARGS}
    num_styles = build_generator(class_name, kwargs).num_ws
    components = {
        "synthesis": state("G_synthesis", "G_synthesis", dict(rest), parts["G_synthesis"]),
        "mapping": state("G_mapping", "G_mapping", {**rest, "dlatent_broadcast": num_styles},
                         parts["G_mapping"]),
    }
    return state(name, func, kwargs, parts[""], components)


def write_snapshot(path: str | os.PathLike, networks: Mapping[str, tuple[Mapping[str, Any],
                                                                          Mapping[str, Any]]],
                   module_src: str) -> str:
    """Writes `(G, D, Gs)` as the official pickle.

    Args:
      path: the `.pkl` to write (atomically).
      networks: `{'G', 'D', 'G_ema'}` -> (official kwargs with `class_name`, Flax variables).
      module_src: the source of `training/networks_stylegan.py`.
    """
    nets = []
    for key, name in (("G", "G"), ("D", "D"), ("G_ema", "Gs")):
        kwargs, variables = networks[key]
        kwargs = dict(kwargs)
        class_name = kwargs.pop("class_name")
        tf_vars = tf_stylegan1.from_flax({k: v for k, v in variables.items()
                                          if k in ("params", "buffers")})
        nets.append(network_state(name, class_name, kwargs, tf_vars, module_src))
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=4).dump(tuple(nets))
    path = os.fspath(path)
    with open(path + ".tmp", "wb") as f:
        f.write(buffer.getvalue())
    os.replace(path + ".tmp", path)
    return path


def export_snapshot(directory: str, out: str, official_repo: str) -> str:
    """A flaxgan export folder (G, D, G_ema of a v1 run) -> the official `.pkl` at `out`."""
    src_path = pathlib.Path(official_repo) / "training" / "networks_stylegan.py"
    if not src_path.is_file():
        raise SystemExit(f"--official_repo={official_repo}: no training/networks_stylegan.py "
                         "(git clone https://github.com/NVlabs/stylegan)")
    networks = {}
    for key in ("G", "D", "G_ema"):
        kwargs, parameters, buffers = export.read_network(directory, key)
        networks[key] = (kwargs, convert.to_flax(parameters, buffers))
    return write_snapshot(out, networks, src_path.read_text(encoding="utf-8"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--network", required=True, help="flaxgan export folder (snapshots/...)")
    parser.add_argument("--official_repo", required=True, help="clone of NVlabs/stylegan")
    parser.add_argument("--out", required=True, help="the .pkl to write")
    args = parser.parse_args()
    print(export_snapshot(args.network, args.out, args.official_repo))


if __name__ == "__main__":
    main()
