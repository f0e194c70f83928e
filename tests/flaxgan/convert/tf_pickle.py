"""Official-format TensorFlow snapshot pickles for tests, without TensorFlow or dnnlib.

`read(path)` turns a (trusted, vendored) TF snapshot into editable `Network`s; `dumps(obj)`
pickles them back in the official format: `dnnlib.tflib.network.Network` by reference, NEWOBJ
without arguments, then BUILD with the state dict, numpy arrays as numpy pickles them.
"""

from __future__ import annotations

import contextlib
import copy
import pickle
import sys
import types
from typing import Any

import numpy as np


class Network:
    """An official `dnnlib.tflib.network.Network`'s pickled state, editable."""

    def __init__(self, state: dict | None = None):
        self.state = state if state is not None else {}

    def __setstate__(self, state: dict) -> None:
        self.state = state

    def __getstate__(self) -> dict:
        return self.state

    def component(self, key: str) -> Network:
        return self.state["components"][key]

    def variables(self) -> dict[str, np.ndarray]:
        return dict(self.state["variables"])

    def set_variables(self, variables: dict[str, Any]) -> None:
        self.state["variables"] = list(variables.items())


Network.__module__, Network.__qualname__ = "dnnlib.tflib.network", "Network"


class _Reader(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("dnnlib.tflib.network", "Network"):
            return Network
        if module.split(".")[0] == "numpy":
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"unexpected global {module}.{name}")


def read(path: Any) -> Any:
    """A TF snapshot as `Network`s (a fresh copy each call)."""
    with open(path, "rb") as f:
        return _Reader(f).load()


@contextlib.contextmanager
def _network_module():
    """`dnnlib.tflib.network.Network` resolvable while pickling (any real dnnlib set aside)."""
    names = ("dnnlib", "dnnlib.tflib", "dnnlib.tflib.network")
    saved = {name: sys.modules.pop(name) for name in names if name in sys.modules}
    modules = {name: types.ModuleType(name) for name in names}
    modules["dnnlib.tflib.network"].Network = Network
    sys.modules.update(modules)
    try:
        yield
    finally:
        for name in names:
            del sys.modules[name]
        sys.modules.update(saved)


def dumps(obj: Any, protocol: int = 4) -> bytes:
    """`obj` (e.g. a `(G, D, Gs)` tuple of `Network`s) pickled as official training does."""
    with _network_module():
        return pickle.dumps(obj, protocol=protocol)


def edited(path: Any, edit) -> bytes:
    """The snapshot at `path` after `edit(tree)` (in place, or returning a replacement)."""
    tree = read(path)
    result = edit(tree)
    return dumps(tree if result is None else result)


def clone(net: Network) -> Network:
    return copy.deepcopy(net)
