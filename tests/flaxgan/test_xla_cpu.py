"""flaxgan.xla_cpu: programs compiled with convolutions on XLA's own CPU kernels."""

import functools
import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from flaxgan import xla_cpu


def test_options_follow_the_jaxlib_version_and_the_users_flags():
    verified = xla_cpu.VERIFIED_JAXLIB[0]
    option = xla_cpu.YNN_FUSION_OPTION
    assert xla_cpu.compiler_options(verified, "") == {
        option: "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"}
    assert xla_cpu.compiler_options(verified, "--xla_force_host_platform_device_count=8") != {}
    assert xla_cpu.compiler_options(verified, f"--{option}=LIBRARY_FUSION_TYPE_DOT") == {}
    assert xla_cpu.compiler_options("0.0.1", "") == {}


def test_jit_is_usable_as_jax_jit_and_keeps_compiler_options_its_own():
    @xla_cpu.jit
    def double(x):
        return 2 * x

    @functools.partial(xla_cpu.jit, static_argnums=1)
    def power(x, n):
        return x ** n

    assert float(double(3.0)) == 6.0
    assert float(power(2.0, 3)) == 8.0
    with pytest.raises(TypeError, match="compiler_options"):
        xla_cpu.jit(double, compiler_options={})


_COMPARE = """
import json
import jax, jax.numpy as jnp, numpy as np
from flaxgan import xla_cpu
conv = lambda x, w: jax.lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                                 dimension_numbers=("NHWC", "HWIO", "NHWC"))
rng = np.random.default_rng(0)
x = jnp.asarray(rng.normal(size=(8, 32, 32, 64)).astype(np.float32))
w = jnp.asarray(rng.normal(size=(3, 3, 64, 32)).astype(np.float32) / 24)
default, ours = jax.jit(conv), xla_cpu.jit(conv)
print(json.dumps({
    "options": xla_cpu.COMPILER_OPTIONS, "backend": jax.default_backend(),
    "default_ynn": "ynn_fusion" in default.lower(x, w).compile().as_text(),
    "ours_ynn": "ynn_fusion" in ours.lower(x, w).compile().as_text(),
    "max_diff": float(jnp.max(jnp.abs(ours(x, w) - default(x, w))))}))
"""


def test_convolutions_leave_ynnpack_and_give_the_same_values():
    """In a process with XLA's default flags (the suite's `XLA_FLAGS` lower the optimisation
    level, at which XLA forms no YNNPACK fusions). Fails when a jaxlib no longer runs
    convolutions as YNNPACK fusions by default, or the option stops working: then the choice
    must be measured again."""
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["PYTHONPATH"] = str(pathlib.Path(__file__).resolve().parents[2])
    out = subprocess.run([sys.executable, "-c", _COMPARE], env=env, capture_output=True,
                         text=True, timeout=300, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if result["backend"] != "cpu" or not result["options"]:
        pytest.skip(f"not XLA CPU on a verified jaxlib: {result}")
    assert result["default_ynn"] and not result["ours_ynn"], result
    # Two float32 kernels summing 576 products (|y| ~ 1) in their own orders: a few ulps.
    assert result["max_diff"] < 1e-5, result


def test_describe_names_the_choice(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "")
    monkeypatch.setattr(xla_cpu, "COMPILER_OPTIONS", {"x": "y"})
    assert xla_cpu.describe().startswith("CPU convolutions: XLA's own kernels")
    monkeypatch.setattr(xla_cpu, "COMPILER_OPTIONS", {})
    assert "not one the choice was measured on" in xla_cpu.describe()
    monkeypatch.setenv("XLA_FLAGS", f"--{xla_cpu.YNN_FUSION_OPTION}=LIBRARY_FUSION_TYPE_DOT")
    assert "as set by XLA_FLAGS" in xla_cpu.describe()
    assert os.environ["XLA_FLAGS"]  # restored by monkeypatch afterwards


def test_jitted_helpers_run_inside_other_programs_and_under_transformations():
    """JAX rejects compile options on nested jits: a helper made with `jit` and called from
    another `jit`, `grad`, `vmap` or `shard_map` runs without them (inlined)."""
    @xla_cpu.jit
    def square(x):
        return x * x

    @xla_cpu.jit
    def outer(x):
        return square(x) + 1

    assert float(outer(3.0)) == 10.0
    assert float(jax.jit(lambda x: square(x))(2.0)) == 4.0
    assert float(jax.grad(square)(3.0)) == 6.0
    np.testing.assert_array_equal(jax.vmap(square)(np.arange(3.0)), [0.0, 1.0, 4.0])
    assert square.__name__ == "square" and "square" in square.lower(1.0).as_text()
