r"""One convolution layer's training cost on CPU: forward + input and weight gradients.

    python -m benchmarks.conv_grad [--repeats=5] [--torch_threads=2]

For the 3x3 layers of a 256² StyleGAN2 (`paper256` widths, 4 images per device), times
`y = conv(x, w)` and `d sum(y * t) / d(x, w)` three ways, float32, same inputs: XLA's own
convolution gradient (`lax.conv_general_dilated` under `jax.grad`, what flaxgan runs), a
candidate kept here as an experiment — XLA's input gradient with the weight gradient as
blocked im2col GEMMs (`conv_weight_gradient`; 1.2-7.8x faster per layer, not faster in whole
training iterations, see `RESULTS.md`, so not in the library) — and torch's `conv2d` backward
(oneDNN) when torch is installed. Prints the median and min-max of
`--repeats` timed calls after one warm-up, and the largest weight-gradient difference between
the sides relative to the gradient's largest entry.
"""

from __future__ import annotations

import functools
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed calls per implementation.")
_TORCH_THREADS = flags.DEFINE_integer("torch_threads", 2, "torch.set_num_threads.")

# Patch rows per block: the block's patches stay in cache and feed one GEMM.
_PATCH_BLOCK_BYTES = 4 << 20


def _lax_conv(x: jax.Array, w: jax.Array, stride: int, padding: tuple[int, int]) -> jax.Array:
    """XLA's convolution (flaxgan's), NHWC / HWIO, `padding = (py, px)` on both sides."""
    py, px = padding
    return jax.lax.conv_general_dilated(
        x, w, window_strides=(stride, stride), padding=[(py, py), (px, px)],
        dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _block_rows(out_h: int, row_bytes: int) -> int:
    """The largest divisor of `out_h` whose block of patch rows fits `_PATCH_BLOCK_BYTES`."""
    fits = max(1, _PATCH_BLOCK_BYTES // max(row_bytes, 1))
    return max(d for d in range(1, min(out_h, fits) + 1) if out_h % d == 0)


def conv_weight_gradient(x: jax.Array, dy: jax.Array, kernel: tuple[int, int], stride: int,
                         padding: tuple[int, int]) -> jax.Array:
    """`dL/dw` of `y = conv(x, w)` (NHWC / HWIO, `groups = 1`) as blocked im2col GEMMs.

    dw[i, j, c, o] = sum_{n, h, w} x_pad[n, s*h + i, s*w + j, c] * dy[n, h, w, o]: per block of
    output rows, the `kh * kw` shifted (strided) views of `x_pad` side by side along channels
    ([N * rows * W', kh * kw * C]) times `dy`'s rows ([N * rows * W', O]), summed over blocks.

    Args:
      x: `[N, H, W, C]` forward input.
      dy: `[N, H', W', O]` gradient of the output.
      kernel: `(kh, kw)`.
      stride: the forward stride.
      padding: `(py, px)`, non-negative, on both sides (as the forward).

    Returns:
      `[kh, kw, C, O]`, float32 accumulation cast to `x`'s dtype.
    """
    (kh, kw), (py, px) = kernel, padding
    batch, _, _, channels = x.shape
    _, out_h, out_w, out_channels = dy.shape
    x = jnp.pad(x, [(0, 0), (py, py), (px, px), (0, 0)])
    rows = _block_rows(out_h, batch * out_w * kh * kw * channels * x.dtype.itemsize)
    in_rows = (rows - 1) * stride + kh

    def block_product(block):
        xb = jax.lax.dynamic_slice_in_dim(x, block * rows * stride, in_rows, axis=1)
        dyb = jax.lax.dynamic_slice_in_dim(dy, block * rows, rows, axis=1)
        patches = jnp.concatenate(
            [xb[:, i:i + (rows - 1) * stride + 1:stride, j:j + (out_w - 1) * stride + 1:stride]
             for i in range(kh) for j in range(kw)], axis=-1)
        return jax.lax.dot_general(
            patches.reshape(-1, kh * kw * channels), dyb.reshape(-1, out_channels),
            (((0,), (0,)), ((), ())), preferred_element_type=jnp.float32)

    # The first block starts the sum (a zeros carry would lack the inputs' varying mesh axes
    # inside `shard_map`).
    total = jax.lax.fori_loop(1, out_h // rows, lambda block, t: t + block_product(block),
                              block_product(0))
    return total.reshape(kh, kw, channels, out_channels).astype(x.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv_blocked_grad(x: jax.Array, w: jax.Array, stride: int,
                       padding: tuple[int, int]) -> jax.Array:
    """`_lax_conv` whose weight gradient is `conv_weight_gradient`."""
    return _lax_conv(x, w, stride, padding)


def _conv_blocked_grad_fwd(x, w, stride, padding):
    return _lax_conv(x, w, stride, padding), (x, w)


def _conv_blocked_grad_bwd(stride, padding, residuals, dy):
    x, w = residuals
    kh, kw = w.shape[:2]
    py, px = padding
    if stride == 1 and py <= kh - 1 and px <= kw - 1:
        # dx = dy correlated with the flipped, transposed kernel: the same operation again,
        # so a second derivative (R1, path length) also takes the blocked weight gradient.
        dx = _conv_blocked_grad(dy, jnp.flip(w, (0, 1)).swapaxes(2, 3), 1,
                                (kh - 1 - py, kw - 1 - px))
    else:
        dx = jax.vjp(lambda x_: _lax_conv(x_, w, stride, padding), x)[1](dy)[0]
    dw = conv_weight_gradient(x, dy, (kh, kw), stride, padding)
    return dx, dw.astype(w.dtype)


_conv_blocked_grad.defvjp(_conv_blocked_grad_fwd, _conv_blocked_grad_bwd)


# (batch, size, in channels, out channels): paper256's 3x3 layers at 256² ... 16².
LAYERS = [(4, 256, 64, 64), (4, 128, 128, 128), (4, 64, 256, 256), (4, 32, 512, 512),
          (4, 16, 512, 512)]


def _cell(times: tuple[float, float, float]) -> str:
    median, low, high = (1e3 * t for t in times)
    return f"{median:.0f} ({low:.0f}-{high:.0f})"


def _time(fn, repeats: int) -> tuple[float, float, float]:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times), max(times)


def _jax_gradients(conv_fn):
    loss = lambda x, w, t: jnp.sum(conv_fn(x, w) * t)
    return jax.jit(jax.grad(loss, argnums=(0, 1)))


def _torch_gradients(x, w, t):
    import torch  # noqa: PLC0415 (optional)
    torch.set_num_threads(_TORCH_THREADS.value)
    xt = torch.tensor(np.transpose(x, (0, 3, 1, 2))).requires_grad_()
    wt = torch.tensor(np.transpose(w, (3, 2, 0, 1))).requires_grad_()
    tt = torch.tensor(np.transpose(t, (0, 3, 1, 2)))

    def run():
        xt.grad = wt.grad = None
        (torch.nn.functional.conv2d(xt, wt, padding=1) * tt).sum().backward()
        return xt.grad, wt.grad

    def result():
        gx, gw = run()
        return np.transpose(gx.numpy(), (0, 2, 3, 1)), np.transpose(gw.numpy(), (2, 3, 1, 0))
    return run, result


def main(argv):
    del argv
    try:
        import torch  # noqa: F401, PLC0415
        have_torch = True
    except ImportError:
        have_torch = False
    xla = _jax_gradients(lambda x, w: _lax_conv(x, w, 1, (1, 1)))
    ours = _jax_gradients(lambda x, w: _conv_blocked_grad(x, w, 1, (1, 1)))
    print(f"jax {jax.__version__}, {jax.devices()[0].device_kind}, float32, "
          f"{_REPEATS.value} repeats; ms median (min-max)")
    print("| layer [N, H, W, C->O] | XLA grad (flaxgan) | blocked dw | torch | XLA / blocked "
          "| torch / blocked | max dw diff / max |dw| |")
    print("|---|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for n, size, cin, cout in LAYERS:
        x = rng.normal(size=(n, size, size, cin)).astype(np.float32)
        w = (rng.normal(size=(3, 3, cin, cout)) / np.sqrt(9 * cin)).astype(np.float32)
        t = rng.normal(size=(n, size, size, cout)).astype(np.float32)
        xj, wj, tj = map(jnp.asarray, (x, w, t))
        row = {}
        for name, fn in (("xla", xla), ("ours", ours)):
            row[name] = _time(lambda fn=fn, args=(xj, wj, tj): jax.block_until_ready(fn(*args)),
                              _REPEATS.value)
        dw_ours = np.asarray(ours(xj, wj, tj)[1])
        scale = float(np.max(np.abs(dw_ours)))
        diff = float(np.max(np.abs(dw_ours - np.asarray(xla(xj, wj, tj)[1])))) / scale
        torch_cell, torch_ratio = "-", "-"
        if have_torch:
            run, result = _torch_gradients(x, w, t)
            row["torch"] = _time(run, _REPEATS.value)
            diff = max(diff, float(np.max(np.abs(dw_ours - result()[1]))) / scale)
            torch_cell = _cell(row["torch"])
            torch_ratio = f"{row['torch'][0] / row['ours'][0]:.2f}x"
        cells = [_cell(row[k]) for k in ("xla", "ours")]
        print(f"| [{n}, {size}, {size}, {cin}->{cout}] | {cells[0]} | {cells[1]} | "
              f"{torch_cell} | {row['xla'][0] / row['ours'][0]:.2f}x | {torch_ratio} | "
              f"{diff:.1e} |", flush=True)


if __name__ == "__main__":
    app.run(main)
