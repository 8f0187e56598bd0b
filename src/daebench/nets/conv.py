"""DDVI's CIFAR-10 encoder and decoder (`ddvi_denoising_diffusion_variational_inference` App. E): "the encoder
is a 4-layer convolutional neural network with (16, 32, 64, 128) channels with a linear layer on top, and the
decoder is a 4-layer transposed convolutional neural network with (64, 32, 16, 3) channels where a linear layer
is used to first turn the feature dimension from 2 to 64."

Both work on the DDVI study's flat vectors, so every family's losses stay as they are: the encoder takes
x [B, H*W*C], the decoder returns [B, H*W*C] (logits for the Bernoulli decoder, means for the Gaussian one).
The flat order is the data layer's NHWC (``ddvi_study.load_data`` flattens the stored uint8 NHWC arrays), so
the networks reshape to NHWC and permute, never reinterpret the vector as CHW. The image shape is passed in
explicitly (the job reads it from the dataset's manifest), never inferred from the vector's length.

What App. E leaves open, and what is used here. The official release (topwasu/DDVI,
models/transposed_conv_net.py: ``ConvNet``, ``TransposedConvNet``) settles the geometry, so it is taken from it:
- encoder convolutions (kernel, stride, padding): (3, 1, 1), (4, 2, 0), (5, 2, 0), (5, 2, 0), i.e. 32 -> 32
  -> 15 -> 6 -> 1 at CIFAR-10's 32x32, so the linear layer sees 128 features;
- decoder: Linear(2, 64) and ReLU, the 64 features as a 64 x 1 x 1 map, then transposed convolutions
  (kernel, stride) (5, 2), (5, 2), (5, 2), (4, 1): 1 -> 5 -> 13 -> 29 -> 32. That stack makes 32x32 images
  only, so the decoder refuses any other size (App. E's networks are CIFAR-10's; MNIST's are MLPs);
- BatchNorm2d and ReLU after every convolution but the decoder's last (the release; the paper names no
  normalisation or activation). BatchNorm's running statistics are buffers: the EMA copies them, and
  evaluation (``model.eval()``) uses them.
Where the release and the paper differ, the paper is followed:
- "a linear layer on top": one Linear(128, out). The release's head is an MLP, Linear(128, 1000) with
  dropout 0.2 then the output layer (algorithms/utils.py::get_q_p, ``MultiWayLinear(128, [hidden_size], ...)``);
- the decoder ends in logits, with the data's channels (3 for CIFAR-10): the study's Bernoulli likelihood takes
  logits (``methods.ddvi_common.log_px``); the release ends in a Sigmoid. The encoder's first layer takes the data's
  channels too (the release hard-codes 3).
"""
from __future__ import annotations

import torch
from torch import nn

ENCODER_CHANNELS = (16, 32, 64, 128)                 # App. E
ENCODER_GEOMETRY = ((3, 1, 1), (4, 2, 0), (5, 2, 0), (5, 2, 0))  # (kernel, stride, padding): the release's ConvNet
DECODER_FEATURES = 64                                # App. E: "a linear layer ... from 2 to 64"
DECODER_CHANNELS = (64, 32, 16)                      # App. E: (64, 32, 16, 3); the last one is the data's channels
DECODER_GEOMETRY = ((5, 2), (5, 2), (5, 2), (4, 1))  # (kernel, stride): the release's TransposedConvNet


def _conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def _check_shape(image_shape) -> tuple[int, int, int]:
    if isinstance(image_shape, int) or len(image_shape) != 3:
        raise ValueError(f"the DDVI CNN needs the data's image shape (channels, height, width), got {image_shape!r}")
    c, h, w = (int(s) for s in image_shape)
    return c, h, w


class ConvEncoder(nn.Module):
    """x [B, H*W*C] (NHWC flattened) -> [B, d_out]: four Conv-BN-ReLU layers, flattened, one Linear (App. E)."""

    def __init__(self, image_shape: tuple[int, int, int], d_out: int):
        super().__init__()
        self.image_shape = c, h, w = _check_shape(image_shape)
        layers: list[nn.Module] = []
        for c_out, (k, s, p) in zip(ENCODER_CHANNELS, ENCODER_GEOMETRY):
            layers += [nn.Conv2d(c, c_out, k, s, p), nn.BatchNorm2d(c_out), nn.ReLU()]
            c, h, w = c_out, _conv_out(h, k, s, p), _conv_out(w, k, s, p)
        if h < 1 or w < 1:
            raise ValueError(f"ConvEncoder: {self.image_shape[1]}x{self.image_shape[2]} images are too small for "
                             "the release's kernels (at least 21x21)")
        self.convs = nn.Sequential(*layers)
        self.linear = nn.Linear(c * h * w, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, h, w = self.image_shape
        img = x.reshape(x.shape[0], h, w, c).permute(0, 3, 1, 2)
        return self.linear(self.convs(img).flatten(1))


class ConvDecoder(nn.Module):
    """z [B, d_in] -> [B, H*W*C] (NHWC flattened): Linear to 64 features and ReLU, a 64 x 1 x 1 map, then four
    transposed convolutions, BN-ReLU between them (App. E; geometry from the release, module doc)."""

    def __init__(self, d_in: int, image_shape: tuple[int, int, int]):
        super().__init__()
        self.image_shape = c_img, h, w = _check_shape(image_shape)
        size = 1
        for k, s in DECODER_GEOMETRY:
            size = (size - 1) * s + k
        if (h, w) != (size, size):
            raise ValueError(f"ConvDecoder: App. E's transposed-convolution stack (the release's kernels 5, 5, 5, 4 "
                             f"from a 1x1 map) makes {size}x{size} images; the data are {h}x{w}")
        self.linear = nn.Sequential(nn.Linear(d_in, DECODER_FEATURES), nn.ReLU())
        layers: list[nn.Module] = []
        c = DECODER_FEATURES
        outs = (*DECODER_CHANNELS, c_img)
        for i, (c_out, (k, s)) in enumerate(zip(outs, DECODER_GEOMETRY)):
            layers.append(nn.ConvTranspose2d(c, c_out, k, s))
            if i < len(outs) - 1:  # the last layer's output is the likelihood's parameter: no BN, no ReLU
                layers += [nn.BatchNorm2d(c_out), nn.ReLU()]
            c = c_out
        self.convs = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.linear(z).reshape(z.shape[0], DECODER_FEATURES, 1, 1)
        return self.convs(h).permute(0, 2, 3, 1).reshape(z.shape[0], -1)
