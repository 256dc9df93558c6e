# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Quality flags of galaxy cutouts and the warnings that go with them.

Every questionable condition met while making a cutout sets one bit of
`CutoutFlag` in the cutout's ``flag`` attribute and emits the matching
subclass of `~galmorphsearch.utils.exceptions.CutoutWarning`, so that a
pipeline can either filter on the flag or escalate the warning.
"""

import enum
import warnings

from ..utils.exceptions import CutoutWarning

__all__ = [
    "CutoutFlag",
    "NoSourceWarning",
    "TruncatedCutoutWarning",
    "NaNPixelsWarning",
    "SaturatedWarning",
    "EmptyImageWarning",
    "FallbackCropWarning",
    "SmallBackgroundWarning",
    "BandScaleWarning",
    "BlendWarning",
]


class CutoutFlag(enum.IntFlag):
    """
    Quality bitmask of a `~galmorphsearch.preprocessing.GalaxyCutout`.

    A value of ``0`` (``CutoutFlag(0)``) means that nothing questionable
    was found. Bits combine with ``|``; test one with
    ``CutoutFlag.CROP_TRUNCATED in cutout.flag``.

    Attributes
    ----------
    NO_SOURCE_AT_POSITION : 1
        No detected source lies under the target position or within the
        position tolerance; the cutout is a fixed-size crop around the
        position (``CENTRE_CROP_FALLBACK`` is set too).
    CROP_TRUNCATED : 2
        The crop square extends beyond the image; the missing pixels were
        filled with randomly drawn background pixels.
    NAN_PIXELS : 4
        Non-finite pixels fell inside the crop: those on the target were
        interpolated from their surroundings, the others replaced by
        randomly drawn background pixels.
    SATURATED : 8
        The target contains saturated pixels (at or above
        ``saturation_level`` for FITS bands, clipped at the maximum value
        for colour images).
    EMPTY_IMAGE : 16
        No source at all was detected in the image (blank or constant
        data).
    CENTRE_CROP_FALLBACK : 32
        The Kron crop could not be measured and a fixed-size crop centred on
        the position (the image centre for colour images) was used instead;
        no rotation was applied.
    SMALL_BACKGROUND : 64
        Fewer object-free pixels are available than a tenth of the
        background patch's pixels, so each repeats more than ten times.
    BAND_SCALE_MISMATCH : 128
        The g, r and i bands differ in scale (robust pixel spread) by more
        than a factor of 100, far more than the colours of galaxies or the
        noise of one survey do: the bands are probably in different units
        (counts and nanomaggies, Jy and nanomaggies) and the colours of the
        cutout are meaningless.
    BLENDED : 256
        The target is probably blended with another source: its segment
        holds a second bright peak, well separated from the first by a dip,
        that deblending did not split off (a close pair), or merging the
        deblended pieces back moved the centroid by a large fraction of the
        Kron radius (a distinct neighbour taken for a piece of the galaxy).
        The cutout then shows both sources, and its centroid, orientation
        and Kron radius describe the pair.
    """

    NO_SOURCE_AT_POSITION = 1
    CROP_TRUNCATED = 2
    NAN_PIXELS = 4
    SATURATED = 8
    EMPTY_IMAGE = 16
    CENTRE_CROP_FALLBACK = 32
    SMALL_BACKGROUND = 64
    BAND_SCALE_MISMATCH = 128
    BLENDED = 256


class NoSourceWarning(CutoutWarning):
    """No source was found at the target position (``NO_SOURCE_AT_POSITION``)."""


class TruncatedCutoutWarning(CutoutWarning):
    """The crop leaves the image and was padded (``CROP_TRUNCATED``)."""


class NaNPixelsWarning(CutoutWarning):
    """Non-finite pixels inside the crop were replaced (``NAN_PIXELS``)."""


class SaturatedWarning(CutoutWarning):
    """The target contains saturated pixels (``SATURATED``)."""


class EmptyImageWarning(CutoutWarning):
    """No source was detected anywhere in the image (``EMPTY_IMAGE``)."""


class FallbackCropWarning(CutoutWarning):
    """A fixed-size centred crop replaced the Kron crop (``CENTRE_CROP_FALLBACK``)."""


class SmallBackgroundWarning(CutoutWarning):
    """Too few object-free pixels for a background patch (``SMALL_BACKGROUND``)."""


class BandScaleWarning(CutoutWarning):
    """The bands differ in scale by orders of magnitude (``BAND_SCALE_MISMATCH``)."""


class BlendWarning(CutoutWarning):
    """The target is probably blended with another source (``BLENDED``)."""


_FLAG_WARNINGS = {
    CutoutFlag.NO_SOURCE_AT_POSITION: NoSourceWarning,
    CutoutFlag.CROP_TRUNCATED: TruncatedCutoutWarning,
    CutoutFlag.NAN_PIXELS: NaNPixelsWarning,
    CutoutFlag.SATURATED: SaturatedWarning,
    CutoutFlag.EMPTY_IMAGE: EmptyImageWarning,
    CutoutFlag.CENTRE_CROP_FALLBACK: FallbackCropWarning,
    CutoutFlag.SMALL_BACKGROUND: SmallBackgroundWarning,
    CutoutFlag.BAND_SCALE_MISMATCH: BandScaleWarning,
    CutoutFlag.BLENDED: BlendWarning,
}


def _raise_flag(flag, bit, message):
    """
    Emit the warning of ``bit`` and return ``flag`` with ``bit`` set.

    Parameters
    ----------
    flag : `CutoutFlag`
        The flag value so far.
    bit : `CutoutFlag`
        The single bit to set.
    message : str
        The warning message.

    Returns
    -------
    flag : `CutoutFlag`
        ``flag | bit``.
    """
    warnings.warn(message, _FLAG_WARNINGS[bit], stacklevel=4)
    return CutoutFlag(flag | bit)
