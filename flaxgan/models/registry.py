"""Official class names -> Flax modules, with each official code base's defaults.

Snapshots name their networks by the official class (`training.networks.Generator` in
stylegan2-ada-pytorch, `training.networks_stylegan2.Generator` / `...stylegan3.Generator` in
the stylegan3 repository). The two code bases differ in defaults (e.g. the stylegan3
repository's StyleGAN2 networks default to `num_fp16_res=4, conv_clamp=256`,
`w_avg_beta=0.998`) and in how the generator takes synthesis arguments (a
`synthesis_kwargs` dict vs. flat keyword arguments); this module hides both differences.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn

from flaxgan.errors import InvalidArgument
from flaxgan.models import stylegan1, stylegan2, stylegan3

# Modules are built with hashable kwargs (FrozenDicts, tuples): jitted sampling functions take
# the module as a static argument.
freeze_kwargs = stylegan2.freeze_kwargs

__all__ = ["build_generator", "build_discriminator", "GENERATORS", "DISCRIMINATORS",
           "dataset_kwargs"]

Builder = Callable[[Mapping[str, Any]], nn.Module]

_GENERATOR_ARGS = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs")
# Training-mode-only switch of the stylegan3 repository; inference always fuses when it pays.
_IGNORED_SYNTHESIS_ARGS = ("fused_modconv_default",)


def _check_args(module_cls: type[nn.Module], kwargs: Mapping[str, Any], *, given: tuple = ()):
    """Raises TypeError for keyword arguments the module does not take (Flax builds lazily)."""
    known = {f.name for f in dataclasses.fields(module_cls)} - {"parent", "name"}
    unknown = sorted(set(kwargs) - known - set(given))
    if unknown:
        raise TypeError(f"{module_cls.__name__} got unexpected arguments {unknown}")


# Integer constructor arguments (at any nesting level) -> the smallest and largest accepted.
# The ranges hold every official configuration with room to spare; beyond them a snapshot is
# damaged or hostile, and Flax/XLA would fail far from the cause (or allocate without bound).
MAX_RESOLUTION = 8192
_INT_RANGES = {
    "z_dim": (0, 1 << 16), "c_dim": (0, 1 << 16), "w_dim": (1, 1 << 16),
    "img_channels": (1, 4), "img_resolution": (4, MAX_RESOLUTION),
    "channel_base": (1, 1 << 24), "channel_max": (1, 1 << 16), "num_layers": (0, 64),
    "num_fp16_res": (0, 16), "mbstd_group_size": (0, 1 << 16), "mbstd_num_channels": (0, 1 << 10),
}
_NULLABLE = ("mbstd_group_size",)  # None = the whole batch, as the official.


def _check_values(kwargs: Mapping[str, Any], where: str = "") -> None:
    """Raises InvalidArgument for an integer argument of the wrong type or out of range."""
    for key, value in kwargs.items():
        name = f"{where}{key}"
        if isinstance(value, Mapping):
            _check_values(value, f"{name}.")
        elif key in _INT_RANGES:
            lo, hi = _INT_RANGES[key]
            if value is None and key in _NULLABLE:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise InvalidArgument(f"{name}={value!r}: expected an integer in [{lo}, {hi}]")
    resolution = kwargs.get("img_resolution")
    if isinstance(resolution, int) and resolution & (resolution - 1):
        raise InvalidArgument(f"{where}img_resolution={resolution}: expected a power of two")


def _sg2_generator(kwargs: Mapping[str, Any]) -> nn.Module:
    _check_args(stylegan2.MappingNetwork, kwargs.get("mapping_kwargs", {}),
                given=("z_dim", "c_dim", "w_dim", "num_ws"))
    _check_args(stylegan2.SynthesisNetwork, kwargs.get("synthesis_kwargs", {}),
                given=("w_dim", "img_resolution", "img_channels"))
    return stylegan2.Generator(**freeze_kwargs(kwargs))


def _sg2_discriminator(kwargs: Mapping[str, Any]) -> nn.Module:
    _check_args(stylegan2.DiscriminatorBlock, kwargs.get("block_kwargs", {}))
    _check_args(stylegan2.MappingNetwork, kwargs.get("mapping_kwargs", {}))
    _check_args(stylegan2.DiscriminatorEpilogue, kwargs.get("epilogue_kwargs", {}))
    return stylegan2.Discriminator(**freeze_kwargs(kwargs))


def _sg2_ada_generator(kwargs: Mapping[str, Any]) -> nn.Module:
    kwargs = dict(kwargs)
    synthesis = {k: v for k, v in dict(kwargs.pop("synthesis_kwargs", {})).items()
                 if k not in _IGNORED_SYNTHESIS_ARGS}
    return _sg2_generator({**kwargs, "synthesis_kwargs": synthesis})


def _sg3_repo_sg2_generator(kwargs: Mapping[str, Any]) -> nn.Module:
    """`training.networks_stylegan2.Generator`: flat synthesis kwargs, other defaults."""
    base = {k: kwargs[k] for k in _GENERATOR_ARGS if k in kwargs}
    synthesis = {"num_fp16_res": 4, "conv_clamp": 256}
    synthesis.update({k: v for k, v in kwargs.items()
                      if k not in _GENERATOR_ARGS and k not in _IGNORED_SYNTHESIS_ARGS})
    base["mapping_kwargs"] = {"w_avg_beta": 0.998, **dict(base.get("mapping_kwargs", {}))}
    return _sg2_generator({**base, "synthesis_kwargs": synthesis})


def _sg3_repo_sg2_discriminator(kwargs: Mapping[str, Any]) -> nn.Module:
    return _sg2_discriminator({"num_fp16_res": 4, "conv_clamp": 256, **dict(kwargs)})


def _sg3_generator(kwargs: Mapping[str, Any]) -> nn.Module:
    """`training.networks_stylegan3.Generator`: flat synthesis (and layer) kwargs."""
    base = {k: kwargs[k] for k in _GENERATOR_ARGS if k in kwargs}
    synthesis = {k: v for k, v in kwargs.items() if k not in _GENERATOR_ARGS}
    _check_args(stylegan3.SynthesisNetwork, synthesis,
                given=("w_dim", "img_resolution", "img_channels"))
    return stylegan3.Generator(**freeze_kwargs({**base, "synthesis_kwargs": synthesis}))


GENERATORS: dict[str, Builder] = {
    "training.networks.Generator": _sg2_ada_generator,
    "training.networks_stylegan2.Generator": _sg3_repo_sg2_generator,
    "training.networks_stylegan3.Generator": _sg3_generator,
    "training.networks_stylegan.G_style": stylegan1.build_G_style,
}
DISCRIMINATORS: dict[str, Builder] = {
    "training.networks.Discriminator": _sg2_discriminator,
    "training.networks_stylegan2.Discriminator": _sg3_repo_sg2_discriminator,
    "training.networks_stylegan.D_basic": stylegan1.build_D_basic,
}


def _build(table: Mapping[str, Builder], what: str, class_name: str,
           kwargs: Mapping[str, Any]) -> nn.Module:
    if class_name not in table:
        raise InvalidArgument(f"unsupported {what} class {class_name!r}; known: {sorted(table)}")
    kwargs = {k: v for k, v in kwargs.items() if k != "class_name"}
    try:
        _check_values(kwargs)
        return table[class_name](kwargs)
    except (TypeError, InvalidArgument) as e:  # Unknown, missing or bad constructor argument.
        raise InvalidArgument(f"{class_name}: bad constructor arguments: {e}") from None


def build_generator(class_name: str, kwargs: Mapping[str, Any]) -> nn.Module:
    """The Flax generator for an official class name and its constructor kwargs."""
    return _build(GENERATORS, "generator", class_name, kwargs)


def build_discriminator(class_name: str, kwargs: Mapping[str, Any]) -> nn.Module:
    """The Flax discriminator for an official class name and its constructor kwargs."""
    return _build(DISCRIMINATORS, "discriminator", class_name, kwargs)


# The constructor arguments the dataset fixes, by code base: the TF StyleGAN networks take
# `tflib.Network(..., num_channels=, resolution=, label_size=)`, the PyTorch ones
# `img_resolution=, img_channels=, c_dim=`.
_TF_STYLEGAN_PREFIX = "training.networks_stylegan."


def dataset_kwargs(class_name: str, resolution: int, channels: int, c_dim: int
                   ) -> dict[str, int]:
    """Resolution, channels and label size under the official names of `class_name`."""
    if class_name.startswith(_TF_STYLEGAN_PREFIX):
        return dict(resolution=resolution, num_channels=channels, label_size=c_dim)
    return dict(img_resolution=resolution, img_channels=channels, c_dim=c_dim)
