"""Building blocks: FIR resampling, bias/activation, modulated convolution, equalized-lr layers.

The FIR resamplers exported here are the polyphase ones (`polyphase.py`: sums of shifted
slices, several times faster than XLA's grouped dilated convolutions on CPU); `fir.py` keeps
the convolution form of the same operators as their reference.
"""

from flaxgan.nn.activation import ACTIVATIONS, bias_act
from flaxgan.nn.conv import (
    conv2d_resample,
    modulated_conv2d,
    transposed_conv2d,
    upsampling_conv2d,
)
from flaxgan.nn.fir import setup_filter
from flaxgan.nn.layers import Conv2dLayer, FullyConnectedLayer, minibatch_std, normalize_2nd_moment
from flaxgan.nn.polyphase import downsample2d, filter2d, upfirdn2d, upsample2d

__all__ = [
    "ACTIVATIONS",
    "bias_act",
    "conv2d_resample",
    "modulated_conv2d",
    "transposed_conv2d",
    "upsampling_conv2d",
    "Conv2dLayer",
    "FullyConnectedLayer",
    "minibatch_std",
    "normalize_2nd_moment",
    "setup_filter",
    "upfirdn2d",
    "filter2d",
    "upsample2d",
    "downsample2d",
]
