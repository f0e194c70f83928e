"""Building blocks: FIR resampling, bias/activation, modulated convolution, equalized-lr layers."""

from flaxgan.nn.activation import ACTIVATIONS, bias_act
from flaxgan.nn.conv import conv2d_resample, modulated_conv2d
from flaxgan.nn.fir import downsample2d, filter2d, setup_filter, upfirdn2d, upsample2d
from flaxgan.nn.layers import Conv2dLayer, FullyConnectedLayer, minibatch_std, normalize_2nd_moment

__all__ = [
    "ACTIVATIONS",
    "bias_act",
    "conv2d_resample",
    "modulated_conv2d",
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
