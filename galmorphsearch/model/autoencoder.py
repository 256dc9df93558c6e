# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""The TSGICAS convolutional autoencoder: `Encoder` followed by `Decoder`."""

from torch import nn

from .decoder import Decoder
from .encoder import Encoder

__all__ = ["Autoencoder"]


class Autoencoder(nn.Module):
    """
    Convolutional autoencoder: an `Encoder` and the `Decoder` that mirrors it.

    It is trained to reconstruct its input (`train_autoencoder`); afterwards
    only ``autoencoder.encoder`` is used, to turn galaxy images into latent
    vectors.

    Parameters
    ----------
    encoder : `Encoder`, optional
        Defaults to ``Encoder(input_size=256)``, or to an encoder matching
        ``decoder``.
    decoder : `Decoder`, optional
        Defaults to a `Decoder` matching the encoder's input and latent
        sizes and its number of input channels.

    Raises
    ------
    ValueError
        If the encoder and decoder disagree on the image or latent size or
        the number of channels.

    Examples
    --------
    >>> import torch
    >>> from galmorphsearch.model import Autoencoder, Decoder, Encoder
    >>> model = Autoencoder(Encoder(input_size=64),
    ...                     Decoder(input_size=64, channels=(32, 16), fc_channels=64))
    >>> model(torch.rand(1, 3, 64, 64)).shape
    torch.Size([1, 3, 64, 64])
    """

    def __init__(self, encoder=None, decoder=None):
        super().__init__()
        if encoder is None:
            encoder = (Encoder() if decoder is None
                       else Encoder(input_size=decoder.input_size, latent_dim=decoder.latent_dim))
        if not isinstance(encoder, Encoder):
            msg = f"encoder must be an Encoder, not {type(encoder).__name__}"
            raise TypeError(msg)
        if decoder is None:
            decoder = Decoder(input_size=encoder.input_size, latent_dim=encoder.latent_dim,
                              out_channels=encoder.in_channels)
        if not isinstance(decoder, Decoder):
            msg = f"decoder must be a Decoder, not {type(decoder).__name__}"
            raise TypeError(msg)
        if (encoder.input_size, encoder.latent_dim) != (decoder.input_size, decoder.latent_dim):
            msg = (f"the encoder (input_size={encoder.input_size}, latent_dim="
                   f"{encoder.latent_dim}) and decoder (input_size={decoder.input_size}, "
                   f"latent_dim={decoder.latent_dim}) do not match")
            raise ValueError(msg)
        if decoder.out_channels != encoder.in_channels:
            msg = (f"the decoder makes {decoder.out_channels}-channel images but the encoder "
                   f"(input_mode={encoder.input_mode!r}) sees {encoder.in_channels} channels")
            raise ValueError(msg)
        self.encoder = encoder
        self.decoder = decoder

    @property
    def input_size(self):
        """Side of the images in pixels."""
        return self.encoder.input_size

    def forward(self, x):
        """
        Reconstruct a batch of images.

        Parameters
        ----------
        x : `torch.Tensor`
            (B, 3, H, W) float images in [0, 1] (resized to ``input_size``).

        Returns
        -------
        reconstruction : `torch.Tensor`
            (B, C, input_size, input_size) in [0, 1]: the reconstruction of
            `target`, what the encoder sees (C = 3 for colour input).
        """
        return self.decoder(self.encoder(x))

    def target(self, x):
        """
        What the autoencoder reconstructs: ``encoder.prepare(x)``.

        The colour images themselves for ``input_mode='rgb'``; their grey
        level, or residual channel, for the other input modes.
        """
        return self.encoder.prepare(x)
