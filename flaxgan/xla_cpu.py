"""How XLA CPU compiles flaxgan's programs: convolutions on XLA's own kernels, not YNNPACK's.

jaxlib 0.10 hands convolutions and dots to YNNPACK fusions on the CPU. On StyleGAN-sized
convolutions those run slower than XLA's own convolution kernels (`benchmarks/RESULTS.md`,
"Convolutions on XLA CPU"): with them off for convolutions, dots staying on YNNPACK, FID
Inception features ran 2.1-2.3x faster, MTCNN detection 1.5-1.8x, training phases 1.3x at
paper256 widths, training on one host device 1.1-1.2x at every width timed, sampling
512-channel 32² generators 1.3x (256²: level); 32-channel training on two host devices moved
within the run-to-run spread (interleaved repeats: -4 % and +6 %), and nothing measured got
slower beyond it.

`jit` is `jax.jit` with that choice as a per-program compile option: it touches no process-wide
state, does not start a JAX backend, and leaves programs compiled for accelerators unchanged
(the option is read by the CPU compiler only). It applies when

- the installed jaxlib is one where the choice was measured (`VERIFIED_JAXLIB`): the option's
  name is experimental, and XLA rejects an unknown option at compile time; elsewhere JAX's
  default stands;
- the user has not set the same XLA option in `XLA_FLAGS` (an explicit setting wins).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import jax
import jaxlib

__all__ = ["COMPILER_OPTIONS", "VERIFIED_JAXLIB", "YNN_FUSION_OPTION", "compiler_options",
           "describe", "jit"]

YNN_FUSION_OPTION = "xla_cpu_experimental_ynn_fusion_type"
# The fusion kinds YNNPACK keeps: dots, one per fusion (jaxlib 0.10's default adds convolutions).
_DOTS_ONLY = "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"
VERIFIED_JAXLIB = ("0.10.2",)  # the jaxlib versions the choice was measured on


def compiler_options(jaxlib_version: str, xla_flags: str) -> dict[str, str]:
    """The compile options `jit` passes, for a jaxlib version and an `XLA_FLAGS` value."""
    if jaxlib_version not in VERIFIED_JAXLIB or YNN_FUSION_OPTION in xla_flags:
        return {}
    return {YNN_FUSION_OPTION: _DOTS_ONLY}


COMPILER_OPTIONS = compiler_options(jaxlib.__version__, os.environ.get("XLA_FLAGS", ""))


def jit(fun: Callable | None = None, /, **kwargs: Any) -> Any:
    """`jax.jit(fun, **kwargs)` with `COMPILER_OPTIONS`; usable as `@jit`, `@partial(jit, ...)`.

    JAX accepts compile options on top-level programs only, so when such a function is traced
    inside another program (a library step calling a jitted helper) it runs without them,
    inlined into the caller, whose own options then apply.

    Raises:
      TypeError: `compiler_options` given (they are this module's to set).
    """
    if "compiler_options" in kwargs:
        raise TypeError("flaxgan.xla_cpu.jit sets compiler_options itself; use jax.jit")
    if fun is None:
        return functools.partial(jit, **kwargs)
    if not COMPILER_OPTIONS:
        return jax.jit(fun, **kwargs)
    return _TopLevelOptions(fun, kwargs)


class _TopLevelOptions:
    """A jitted function compiled with `COMPILER_OPTIONS` when called at top level."""

    def __init__(self, fun: Callable, kwargs: dict[str, Any]):
        self._top = jax.jit(fun, compiler_options=COMPILER_OPTIONS, **kwargs)
        self._nested = jax.jit(fun, **kwargs)
        functools.update_wrapper(self, fun)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return (self._top if _at_top_level() else self._nested)(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:  # lower, trace, eval_shape, clear_cache, ...
        return getattr(self._top, name)


def _at_top_level() -> bool:
    """Whether no trace is active. JAX has no public query for it; `COMPILER_OPTIONS` is only
    non-empty on `VERIFIED_JAXLIB`, where this private one exists."""
    from jax._src import core  # noqa: PLC0415
    return core.trace_state_clean()


def describe() -> str:
    """One line for the log: which convolution kernels XLA CPU compiles flaxgan's programs with."""
    if COMPILER_OPTIONS:
        return "CPU convolutions: XLA's own kernels (YNNPACK keeps dots; XLA_FLAGS=--" \
               f"{YNN_FUSION_OPTION}=... to choose)"
    if YNN_FUSION_OPTION in os.environ.get("XLA_FLAGS", ""):
        return f"CPU convolutions: as set by XLA_FLAGS ({YNN_FUSION_OPTION})"
    return (f"CPU convolutions: JAX's default (jaxlib {jaxlib.__version__} is not one the "
            f"choice was measured on: {', '.join(VERIFIED_JAXLIB)})")
