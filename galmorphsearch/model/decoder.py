# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""The TSGICAS decoder: the mirror of the encoder, latent vector back to an image."""

import torch
from torch import nn

__all__ = ["Decoder"]

#: Channels of the residual stages for the default decoder (32 px first).
DEFAULT_CHANNELS = (256, 128, 64, 32)
# Side of the feature map after the fully connected layers, and after interpolation.
_FC_SIDE = 4
_BASE_SIDE = 32


class _ResidualBlock(nn.Module):
    """Two 3x3 convolutions with a (1x1 where channels change) shortcut."""

    def __init__(self, c_in, c_out):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
        )
        self.shortcut = (nn.Identity() if c_in == c_out
                         else nn.Sequential(nn.Conv2d(c_in, c_out, 1, bias=False),
                                            nn.BatchNorm2d(c_out)))

    def forward(self, x):
        return torch.relu(self.body(x) + self.shortcut(x))


class _UpBlock(nn.Module):
    """Residual block that doubles the side: conv, then transposed conv (stride 2)."""

    def __init__(self, c_in, c_out):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_in, 3, padding=1, bias=False), nn.BatchNorm2d(c_in),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
        )
        self.shortcut = nn.Sequential(
            nn.ConvTranspose2d(c_in, c_out, 2, stride=2, bias=False), nn.BatchNorm2d(c_out),
        )

    def forward(self, x):
        return torch.relu(self.body(x) + self.shortcut(x))


class Decoder(nn.Module):
    """
    Decoder of the TSGICAS convolutional autoencoder (Seo et al. 2023, section 3.1).

    The mirror of the encoder: fully connected layers map the latent vector
    to a 4 x 4 x 512 feature map, which is interpolated (bilinearly) to
    32 x 32 x 512; a residual block at 32 x 32 and one residual upsampling
    block per doubling (convolution, then a stride-2 transposed convolution)
    bring it to ``input_size``; a last convolution and a sigmoid give a
    3-channel image in [0, 1]. There are log2(input_size / 32) upsampling
    blocks: three for 256 px (the paper), two for 128, one for 64.

    Parameters
    ----------
    input_size : int, optional
        Side of the output images: 32 times a power of two.
    latent_dim : int, optional
        Size of the latent vector.
    channels : sequence of int, optional
        Channels of the 32 x 32 block and of each upsampling block, one more
        than the number of doublings. Defaults to the first entries of
        ``(256, 128, 64, 32)``.
    fc_channels : int, optional
        Channels of the 4 x 4 feature map made by the fully connected layers.
    out_channels : int, optional
        Channels of the output images: 3 for colour; the encoder's
        ``in_channels`` for other input modes (1 grey, 4 colour and
        residual...).

    Examples
    --------
    >>> import torch
    >>> from galmorphsearch.model import Decoder
    >>> decoder = Decoder(input_size=64, channels=(32, 16), fc_channels=64)
    >>> decoder(torch.zeros(2, 512)).shape
    torch.Size([2, 3, 64, 64])
    """

    def __init__(self, input_size=256, latent_dim=512, channels=None, fc_channels=512,
                 out_channels=3):
        super().__init__()
        ok = isinstance(input_size, int) and input_size >= _BASE_SIDE
        n_up = 0
        side = _BASE_SIDE
        while ok and side < input_size:
            side *= 2
            n_up += 1
        if not ok or side != input_size:
            msg = f"the decoder's input_size must be 32 times a power of two, got {input_size!r}"
            raise ValueError(msg)
        if channels is None:
            if n_up + 1 > len(DEFAULT_CHANNELS):
                msg = f"give channels explicitly for input_size={input_size}"
                raise ValueError(msg)
            channels = DEFAULT_CHANNELS[:n_up + 1]
        channels = tuple(channels)
        if len(channels) != n_up + 1 or not all(isinstance(c, int) and c > 0 for c in channels):
            msg = (f"channels must be {n_up + 1} positive integers for input_size={input_size} "
                   f"(one for the 32 x 32 block and one per upsampling), got {channels!r}")
            raise ValueError(msg)
        if isinstance(latent_dim, bool) or not isinstance(latent_dim, int) or latent_dim < 1:
            msg = f"latent_dim must be a positive integer, got {latent_dim!r}"
            raise ValueError(msg)
        if isinstance(out_channels, bool) or not isinstance(out_channels, int) \
                or out_channels < 1:
            msg = f"out_channels must be a positive integer, got {out_channels!r}"
            raise ValueError(msg)
        self.input_size = input_size
        self.latent_dim = latent_dim
        self.out_channels = out_channels
        self.channels = channels
        self.fc_channels = fc_channels
        self.fc = nn.Sequential(
            nn.Linear(latent_dim, latent_dim), nn.ReLU(inplace=True),
            nn.Linear(latent_dim, fc_channels * _FC_SIDE * _FC_SIDE), nn.ReLU(inplace=True),
        )
        blocks = [_ResidualBlock(fc_channels, channels[0])]
        blocks += [_UpBlock(c_in, c_out) for c_in, c_out in zip(channels[:-1], channels[1:],
                                                                strict=True)]
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Conv2d(channels[-1], out_channels, 3, padding=1)

    def forward(self, z):
        """
        Images from latent vectors.

        Parameters
        ----------
        z : `torch.Tensor`
            (B, latent_dim).

        Returns
        -------
        images : `torch.Tensor`
            (B, out_channels, input_size, input_size) in [0, 1].
        """
        if not isinstance(z, torch.Tensor) or z.ndim != 2 or z.shape[1] != self.latent_dim:
            shape = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            msg = f"the decoder takes (B, {self.latent_dim}) tensors, got {shape}"
            raise ValueError(msg)
        x = self.fc(z).view(-1, self.fc_channels, _FC_SIDE, _FC_SIDE)
        x = nn.functional.interpolate(x, size=(_BASE_SIDE, _BASE_SIDE), mode="bilinear",
                                      align_corners=False)
        return torch.sigmoid(self.head(self.blocks(x)))
