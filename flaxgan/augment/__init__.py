"""Adaptive discriminator augmentation (ADA) of StyleGAN2-ADA (Karras et al. 2020), NHWC.

The pipeline of the paper (app. B) and of the official `AugmentPipe`, in three pure steps so
that each can be checked alone:

1. `sample_draws(key, shape, config)`: the raw uniform/normal numbers, per sample and per
   enabled transform, in the official order (a value and a gate for each transform).
2. `resolve_params(draws, p, config)`: transform parameters; a transform fires for a sample when
   its gate `u < multiplier * p`, otherwise its parameter is the identity. `p` is traced.
3. `apply_params(images, params)`: geometric transforms composed into one inverse 3×3 matrix
   and applied once (reflect padding, 2× upsampling with the sym6 wavelet low-pass, bilinear
   sampling, 2× downsampling), colour transforms composed into one 4×4 matrix, then the
   image-space filter, additive noise and cutout.

`augment(images, key, p, config)` chains them; it is jit-able with `config` static, and
differentiable with respect to `images` (the generator is trained through it). Every sample
makes its own decisions. The adaptive `p` heuristic (paper sec. 3) is `ada_update`.

The official pipeline pads by the largest margin any sample of the batch needs, a
data-dependent shape; here the padding is always its official upper bound (size - 1) and the
part beyond the batch's margin is zeroed, which gives the official result with static shapes.
The price is a fixed 2× canvas of (6H - 4) × (6W - 4) pixels per image (28 MB at 256², RGB,
float32), the size the official reaches when a batch's margin hits its clamp. The 2×
resamplers are the network's polyphase ones (`flaxgan.nn.polyphase`, custom VJPs): forward-mode
autodiff (`jax.jvp`) is not supported; reverse mode to any order is.

Modules: `params` (presets, steps 1-2), `transforms` (step 3 and `augment`), `ada` (the
controller of p).
"""

from flaxgan.augment.ada import ada_update, real_sign_stats
from flaxgan.augment.params import (
    AUGPIPE_SPECS,
    COLOR,
    GEOMETRIC,
    AugmentConfig,
    resolve_params,
    sample_draws,
)
from flaxgan.augment.transforms import (
    apply_color,
    apply_cutout,
    apply_geometric,
    apply_imgfilter,
    apply_noise,
    apply_params,
    augment,
    augment_with_draws,
    color_matrix,
    geometric_matrix,
    make_augment_fn,
)

__all__ = [
    "AUGPIPE_SPECS",
    "AugmentConfig",
    "GEOMETRIC",
    "COLOR",
    "sample_draws",
    "resolve_params",
    "geometric_matrix",
    "color_matrix",
    "apply_geometric",
    "apply_color",
    "apply_imgfilter",
    "apply_noise",
    "apply_cutout",
    "apply_params",
    "augment_with_draws",
    "augment",
    "make_augment_fn",
    "real_sign_stats",
    "ada_update",
]
