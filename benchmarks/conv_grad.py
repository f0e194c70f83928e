r"""One convolution layer's training cost on CPU: forward + input and weight gradients.

    python -m benchmarks.conv_grad [--repeats=5] [--torch_threads=2]

For the 3x3 layers of StyleGAN2's networks — stride 1 (`conv`), stride 2 (`down`, the
discriminator's downsampling layers) and the transposed convolution at up 2 (`up`, the
generator's upsampling layers, before their FIR filter) — at the 128-channel cifar preset
(16 images, one host device) and `paper256` widths (4 images, a device's share at batch 8 on
two host devices), times `y = layer(x, w)` with `d sum(y * t) / d(x, w)` three ways, float32,
same inputs: XLA's own autodiff of `lax.conv_general_dilated` (for `up`: the correlation of
the zero-stuffed input), flaxgan's layer (`nn.conv.conv2d` / `transposed_conv2d`, what the
networks run on the CPU) and torch's `conv2d` / `conv_transpose2d` backward (oneDNN) when
torch is installed. Every JAX program is compiled as the library compiles its own
(`flaxgan.xla_cpu.jit`). Prints the median and min-max of `--repeats` timed calls after one
warm-up, and the largest difference of flaxgan's input and weight gradients from XLA's and
torch's, relative to the gradient's largest entry.
"""

from __future__ import annotations

import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from flaxgan import xla_cpu
from flaxgan.nn import conv

_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed calls per implementation.")
_TORCH_THREADS = flags.DEFINE_integer("torch_threads", 2, "torch.set_num_threads.")

# (kind, batch, input size, in channels, out channels).
LAYERS = [("conv", 16, 32, 128, 128), ("down", 16, 32, 128, 128), ("up", 16, 16, 128, 128),
          ("conv", 4, 256, 64, 64), ("down", 4, 256, 64, 64), ("up", 4, 128, 128, 64),
          ("conv", 4, 64, 256, 256), ("up", 4, 32, 512, 256), ("conv", 4, 16, 512, 512)]


def _stuffed_transposed(x, v):
    """The transposed convolution by definition: zero-stuffed input, flipped kernel."""
    return jax.lax.conv_general_dilated(
        x, jnp.flip(v, (0, 1)), (1, 1), [(2, 2), (2, 2)], lhs_dilation=(2, 2),
        dimension_numbers=("NHWC", "HWIO", "NHWC"))


# kind: (flaxgan layer, XLA's, torch's (x, w) in NCHW / torch layout), all (x, w) -> y.
def _layers(kind: str):
    if kind == "up":
        return (lambda x, w: conv.transposed_conv2d(x, w, 2), _stuffed_transposed,
                lambda f, x, w: f.conv_transpose2d(x, w, stride=2))
    stride, padding = (1, (1, 1)) if kind == "conv" else (2, (0, 0))
    return (lambda x, w: conv.conv2d(x, w, stride, padding),
            lambda x, w: conv._lax_conv(x, w, stride, padding),
            lambda f, x, w: f.conv2d(x, w, stride=stride, padding=padding[0]))


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


def _jax_gradients(layer):
    loss = lambda x, w, t: jnp.sum(layer(x, w) * t)
    return xla_cpu.jit(jax.grad(loss, argnums=(0, 1)))


def _torch_gradients(layer, x, w, t, kind):
    import torch  # noqa: PLC0415 (optional)
    torch.set_num_threads(_TORCH_THREADS.value)
    xt = torch.tensor(np.transpose(x, (0, 3, 1, 2))).requires_grad_()
    # conv2d weights are [O, I, kh, kw]; conv_transpose2d's [I, O, kh, kw].
    wt = torch.tensor(np.transpose(w, (2, 3, 0, 1) if kind == "up" else (3, 2, 0, 1)))
    wt.requires_grad_()
    tt = torch.tensor(np.transpose(t, (0, 3, 1, 2)))

    def run():
        xt.grad = wt.grad = None
        (layer(torch.nn.functional, xt, wt) * tt).sum().backward()
        return xt.grad, wt.grad

    def result():  # NHWC / HWIO, as the JAX gradients
        gx, gw = run()
        return (np.transpose(gx.numpy(), (0, 2, 3, 1)),
                np.transpose(gw.numpy(), (2, 3, 0, 1) if kind == "up" else (2, 3, 1, 0)))
    return run, result


def main(argv):
    del argv
    try:
        import torch  # noqa: F401, PLC0415
        have_torch = True
    except ImportError:
        have_torch = False
    print(f"jax {jax.__version__}, {jax.devices()[0].device_kind}, float32, "
          f"{_REPEATS.value} repeats; ms median (min-max); {xla_cpu.describe()}")
    print("| layer | [N, H, W, C->O] | XLA autodiff | flaxgan | torch | XLA / flaxgan "
          "| torch / flaxgan | max grad diff (vs XLA, torch) / max |grad| |")
    print("|---|---|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for kind, n, size, cin, cout in LAYERS:
        ours_layer, xla_layer, torch_layer = _layers(kind)
        x = rng.normal(size=(n, size, size, cin)).astype(np.float32)
        w = (rng.normal(size=(3, 3, cin, cout)) / np.sqrt(9 * cin)).astype(np.float32)
        t = rng.normal(size=jax.eval_shape(xla_layer, x, w).shape).astype(np.float32)
        args = tuple(map(jnp.asarray, (x, w, t)))
        xla, ours = _jax_gradients(xla_layer), _jax_gradients(ours_layer)
        row = {name: _time(lambda fn=fn, args=args: jax.block_until_ready(fn(*args)),
                           _REPEATS.value)
               for name, fn in (("xla", xla), ("ours", ours))}
        grads = [np.asarray(g) for g in ours(*args)]
        references = [[np.asarray(g) for g in xla(*args)]]
        torch_cell, torch_ratio = "-", "-"
        if have_torch:
            run, result = _torch_gradients(torch_layer, x, w, t, kind)
            row["torch"] = _time(run, _REPEATS.value)
            references.append(result())
            torch_cell = _cell(row["torch"])
            torch_ratio = f"{row['torch'][0] / row['ours'][0]:.2f}x"
        diff = max(float(np.max(np.abs(g - r)) / np.max(np.abs(r)))
                   for reference in references for g, r in zip(grads, reference, strict=True))
        print(f"| {kind} | [{n}, {size}, {size}, {cin}->{cout}] | {_cell(row['xla'])} | "
              f"{_cell(row['ours'])} | {torch_cell} | {row['xla'][0] / row['ours'][0]:.2f}x | "
              f"{torch_ratio} | {diff:.1e} |", flush=True)


if __name__ == "__main__":
    app.run(main)
