r"""One convolution layer's training cost on CPU: forward + input and weight gradients.

    python -m benchmarks.conv_grad [--repeats=5] [--torch_threads=2]

For the 3x3 layers of a 256² StyleGAN2 (`paper256` widths, 4 images per device), times
`y = conv(x, w)` and `d sum(y * t) / d(x, w)` three ways, float32, same inputs: XLA's own
convolution gradient (`lax.conv_general_dilated` under `jax.grad`), flaxgan's `nn.conv.conv2d`
(on the CPU: the weight gradient as blocked im2col GEMMs, `conv_weight_gradient`) and torch's
`conv2d` backward (oneDNN) when torch is installed. Prints the median and min-max of
`--repeats` timed calls after one warm-up, and the largest weight-gradient difference between
the sides relative to the gradient's largest entry.
"""

from __future__ import annotations

import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from flaxgan.nn import conv

_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed calls per implementation.")
_TORCH_THREADS = flags.DEFINE_integer("torch_threads", 2, "torch.set_num_threads.")

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
    xla = _jax_gradients(lambda x, w: conv._lax_conv(x, w, 1, (1, 1)))
    ours = _jax_gradients(lambda x, w: conv.conv2d(x, w, 1, (1, 1)))
    print(f"jax {jax.__version__}, {jax.devices()[0].device_kind}, float32, "
          f"{_REPEATS.value} repeats; ms median (min-max)")
    print("| layer [N, H, W, C->O] | XLA grad | flaxgan (blocked dw) | torch | XLA / blocked "
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
