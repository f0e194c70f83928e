"""Direct (loop-based) NumPy versions of the resampling ops, the ground truth of the nn tests."""

import numpy as np


def correlate2d(x: np.ndarray, kernel: np.ndarray, groups: int = 1) -> np.ndarray:
    """Valid cross-correlation: x `[N, H, W, I]`, kernel `[KH, KW, I // groups, O]`."""
    n, h, w, c_in = x.shape
    kh, kw, c_per_group, c_out = kernel.shape
    o_per_group = c_out // groups
    out = np.zeros([n, h - kh + 1, w - kw + 1, c_out], np.float64)
    for g in range(groups):
        xs = x[..., g * c_per_group:(g + 1) * c_per_group].astype(np.float64)
        ks = kernel[..., g * o_per_group:(g + 1) * o_per_group].astype(np.float64)
        for i in range(kh):
            for j in range(kw):
                patch = xs[:, i:i + out.shape[1], j:j + out.shape[2], :]
                out[..., g * o_per_group:(g + 1) * o_per_group] += patch @ ks[i, j]
    return out


def pad_or_crop(x: np.ndarray, px0: int, px1: int, py0: int, py1: int) -> np.ndarray:
    x = np.pad(x, [(0, 0), (max(py0, 0), max(py1, 0)), (max(px0, 0), max(px1, 0)), (0, 0)])
    return x[:, max(-py0, 0):x.shape[1] - max(-py1, 0), max(-px0, 0):x.shape[2] - max(-px1, 0)]


def upfirdn2d(x, f, up=1, down=1, padding=(0, 0, 0, 0), flip_filter=False, gain=1.0):
    """Zero-insert by `up`, pad (x0, x1, y0, y1), convolve with f, keep every `down`-th pixel."""
    n, h, w, c = x.shape
    xu = np.zeros([n, h * up, w * up, c], np.float64)
    xu[:, ::up, ::up] = x
    xu = pad_or_crop(xu, *padding)
    f = np.asarray(f, np.float64)
    f2 = (np.outer(f, f) if f.ndim == 1 else f) * gain
    if not flip_filter:
        f2 = f2[::-1, ::-1]
    kernel = np.zeros([*f2.shape, c, c])
    for ch in range(c):
        kernel[:, :, ch, ch] = f2
    return correlate2d(xu, kernel)[:, ::down, ::down]
