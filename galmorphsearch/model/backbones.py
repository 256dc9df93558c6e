# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
The networks behind `~galmorphsearch.model.Encoder`, and what they see.

Backbones map a (B, C, S, S) float batch to (B, F) features. Each is
registered by name in `BACKBONES` with its builder; `Encoder` takes the name
as its ``architecture``. Input modes (`INPUT_MODES`) turn the (B, 3, S, S)
colour cutouts that every encoder accepts into the C channels the backbone
sees: the colour image itself, its grey level (the colour-bias experiment of
Seo et al. 2023, section 5), or either with a residual channel, the image
minus a smooth elliptical model of the galaxy's light profile (the
improvement they propose), which leaves arms, bars and clumps.
"""

import math

import torch
from torch import nn

__all__ = ["BACKBONES", "INPUT_MODES", "register_backbone", "prepare_input",
           "residual_channel", "SmallViT", "HybridBackbone", "VGGBackbone"]

#: Input modes: name -> number of channels the backbone sees.
INPUT_MODES = {"rgb": 3, "grey": 1, "rgb+residual": 4, "grey+residual": 2}

#: Registered backbones: name -> ``(builder, description)``. A builder takes
#: ``in_channels`` and ``input_size`` and returns ``(module, n_features)``.
BACKBONES = {}


def register_backbone(name, description=""):
    """
    Register a backbone builder under ``name`` (a decorator).

    The builder is called as ``builder(in_channels=..., input_size=...)``
    and returns ``(module, n_features)``: a `torch.nn.Module` mapping a
    (B, in_channels, input_size, input_size) batch to (B, n_features).

    Parameters
    ----------
    name : str
        The ``architecture`` name that `Encoder` will accept.
    description : str, optional
        One line shown in the documentation and errors.

    Examples
    --------
    >>> from torch import nn
    >>> from galmorphsearch.model.backbones import BACKBONES, register_backbone
    >>> @register_backbone("tiny-mlp", "flatten, then one linear layer")
    ... def _tiny(in_channels, input_size):
    ...     return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * input_size ** 2, 8)), 8
    >>> "tiny-mlp" in BACKBONES
    True
    >>> del BACKBONES["tiny-mlp"]
    """
    def decorator(builder):
        if not isinstance(name, str) or not name:
            msg = f"backbone name must be a non-empty string, got {name!r}"
            raise ValueError(msg)
        BACKBONES[name] = (builder, description)
        return builder
    return decorator


def build_backbone(architecture, in_channels, input_size):
    """The module and feature count of a registered backbone (clear errors)."""
    if architecture not in BACKBONES:
        msg = (f"unknown architecture {architecture!r}: choose among "
               f"{', '.join(sorted(BACKBONES))}")
        raise ValueError(msg)
    builder, _ = BACKBONES[architecture]
    module, features = builder(in_channels=in_channels, input_size=input_size)
    return module, int(features)


# ---------------------------------------------------------------------------
# input modes
def _grey(x):
    return x.mean(dim=1, keepdim=True)


def residual_channel(x, n_bins=None):
    """
    Grey image minus a smooth elliptical model of the galaxy's light profile.

    Per image, the flux-weighted second moments of the grey level about the
    image centre (where preprocessing puts the galaxy) give an axis ratio
    and a position angle; the model is the mean grey level in elliptical
    annuli of that shape. What is left, mapped to [0, 1] as
    ``0.5 + (grey - model)`` (clipped), holds arms, bars, rings and clumps
    rather than the overall light distribution.

    Parameters
    ----------
    x : `torch.Tensor`
        (B, 3, S, S) float images in [0, 1].
    n_bins : int, optional
        Number of elliptical annuli (default S // 2).

    Returns
    -------
    residual : `torch.Tensor`
        (B, 1, S, S) in [0, 1]; 0.5 where the model is exact.

    Examples
    --------
    An elliptical disc leaves an almost flat residual; a one-sided arc on
    it stands out:

    >>> import torch
    >>> from galmorphsearch.model.backbones import residual_channel
    >>> yy, xx = torch.meshgrid(torch.arange(32.0) - 15.5, torch.arange(32.0) - 15.5,
    ...                         indexing="ij")
    >>> r = torch.sqrt(xx ** 2 + (yy / 0.5) ** 2)
    >>> disc = torch.exp(-r / 4)
    >>> float((residual_channel(disc.expand(1, 3, 32, 32)) - 0.5).abs().mean()) < 0.01
    True
    >>> arc = disc + 0.3 * torch.exp(-(r - 9) ** 2 / 2) * (xx > 0)
    >>> float((residual_channel(arc.expand(1, 3, 32, 32)) - 0.5).abs().max()) > 0.1
    True
    """
    grey = _grey(x)[:, 0]
    b, h, w = grey.shape
    n_bins = int(n_bins or max(2, min(h, w) // 2))
    dtype = grey.dtype
    yy = torch.arange(h, dtype=dtype, device=grey.device) - (h - 1) / 2
    xx = torch.arange(w, dtype=dtype, device=grey.device) - (w - 1) / 2
    yy, xx = torch.meshgrid(yy, xx, indexing="ij")
    # Flux-weighted moments above the median (the sky) of each image.
    sky = grey.flatten(1).median(dim=1).values[:, None, None]
    weight = (grey - sky).clamp_min(0)
    total = weight.sum(dim=(1, 2)).clamp_min(1e-12)
    mxx = (weight * xx * xx).sum(dim=(1, 2)) / total
    myy = (weight * yy * yy).sum(dim=(1, 2)) / total
    mxy = (weight * xx * yy).sum(dim=(1, 2)) / total
    theta = 0.5 * torch.atan2(2 * mxy, mxx - myy)
    common = torch.sqrt(((mxx - myy) / 2) ** 2 + mxy ** 2)
    major = ((mxx + myy) / 2 + common).clamp_min(1e-12)
    minor = ((mxx + myy) / 2 - common).clamp_min(1e-12)
    q = torch.sqrt(minor / major).clamp(0.1, 1.0)
    cos, sin = torch.cos(theta)[:, None, None], torch.sin(theta)[:, None, None]
    u = xx * cos + yy * sin
    v = -xx * sin + yy * cos
    radius = torch.sqrt(u ** 2 + (v / q[:, None, None]) ** 2)
    r_max = math.hypot(h, w) / 2
    bins = (radius / r_max * n_bins).long().clamp_(0, n_bins - 1)
    flat_bins = (bins + torch.arange(b, device=grey.device)[:, None, None] * n_bins).flatten()
    sums = torch.zeros(b * n_bins, dtype=dtype, device=grey.device)
    counts = torch.zeros_like(sums)
    sums.index_add_(0, flat_bins, grey.flatten())
    counts.index_add_(0, flat_bins, torch.ones_like(grey).flatten())
    profile = sums / counts.clamp_min(1)
    model = profile[flat_bins].view(b, h, w)
    return (0.5 + (grey - model)).clamp(0, 1)[:, None]


def prepare_input(x, mode):
    """
    The channels a backbone sees, from (B, 3, S, S) colour images in [0, 1].

    Parameters
    ----------
    x : `torch.Tensor`
        (B, 3, S, S) float images in [0, 1].
    mode : {'rgb', 'grey', 'rgb+residual', 'grey+residual'}
        See `INPUT_MODES`.

    Returns
    -------
    prepared : `torch.Tensor`
        (B, INPUT_MODES[mode], S, S) in [0, 1].
    """
    if mode == "rgb":
        return x
    if mode == "grey":
        return _grey(x)
    if mode == "rgb+residual":
        return torch.cat([x, residual_channel(x)], dim=1)
    if mode == "grey+residual":
        return torch.cat([_grey(x), residual_channel(x)], dim=1)
    msg = f"unknown input mode {mode!r}: choose among {', '.join(INPUT_MODES)}"
    raise ValueError(msg)


# ---------------------------------------------------------------------------
# backbones
def _torchvision_resnet(name, in_channels):
    import torchvision

    net = getattr(torchvision.models, name)(weights=None)
    if in_channels != 3:
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    features = net.fc.in_features
    net.fc = nn.Identity()
    return net, features


for _name in ("resnet18", "resnet34", "resnet50"):
    def _builder(in_channels, input_size, _name=_name):
        return _torchvision_resnet(_name, in_channels)
    register_backbone(_name, f"torchvision {_name}, classification layer removed "
                             "(the TSGICAS encoder is resnet18)")(_builder)


@register_backbone("resnet18-trimmed", "ResNet-18 without its first max-pooling and fourth "
                                       "stage, 256 features (Wei et al. 2022)")
def _resnet18_trimmed(in_channels, input_size):
    net, _ = _torchvision_resnet("resnet18", in_channels)
    net.maxpool = nn.Identity()
    net.layer4 = nn.Identity()
    return net, 256


class SmallViT(nn.Module):
    """
    A small vision transformer: patch embedding, class token, pre-norm blocks.

    Parameters
    ----------
    in_channels : int
        Input channels.
    input_size : int
        Side of the (square) input.
    patch_size : int, optional
        Side of the patches; default ``max(4, input_size // 7)`` (12 for
        the 84-pixel inputs of Wei et al. 2022: 7 x 7 patches).
    dim, depth, heads, mlp_ratio : int, optional
        Width (the number of output features), blocks, attention heads and
        hidden width of the MLPs relative to ``dim``.
    """

    def __init__(self, in_channels, input_size, patch_size=None, dim=256, depth=4, heads=4,
                 mlp_ratio=2):
        super().__init__()
        patch_size = int(patch_size or max(4, input_size // 7))
        n_side = input_size // patch_size
        if n_side < 1:
            msg = f"patch_size {patch_size} is larger than the input ({input_size} px)"
            raise ValueError(msg)
        self.patch_size = patch_size
        self.embed = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.position = nn.Parameter(torch.zeros(1, n_side * n_side + 1, dim))
        nn.init.trunc_normal_(self.position, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=dim * mlp_ratio,
                                           dropout=0.0, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.dim = dim

    def forward(self, x):
        tokens = self.embed(x).flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        tokens = torch.cat([cls, tokens], dim=1) + self.position
        return self.norm(self.blocks(tokens)[:, 0])


@register_backbone("vit-small", "small vision transformer, 256 features (the transformer "
                                "branch of Wei et al. 2022)")
def _vit_small(in_channels, input_size):
    return SmallViT(in_channels, input_size), 256


class HybridBackbone(nn.Module):
    """Trimmed ResNet-18 and a small ViT side by side, features concatenated."""

    def __init__(self, in_channels, input_size):
        super().__init__()
        self.cnn, cnn_features = _resnet18_trimmed(in_channels, input_size)
        self.vit = SmallViT(in_channels, input_size)
        self.n_features = cnn_features + self.vit.dim

    def forward(self, x):
        return torch.cat([self.cnn(x), self.vit(x)], dim=1)


@register_backbone("hybrid", "trimmed ResNet-18 (256) + small ViT (256), concatenated to 512 "
                             "features (the fused encoder of Wei et al. 2022)")
def _hybrid(in_channels, input_size):
    net = HybridBackbone(in_channels, input_size)
    return net, net.n_features


class VGGBackbone(nn.Module):
    """
    A VGG-style network: blocks of two 3x3 convolutions and a max-pooling.

    Parameters
    ----------
    in_channels : int
        Input channels.
    widths : sequence of int, optional
        Channels of each block; the last is the number of features, after
        global average pooling.
    """

    def __init__(self, in_channels, widths=(32, 64, 128, 256)):
        super().__init__()
        layers = []
        c_in = in_channels
        for c_out in widths:
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                       nn.ReLU(inplace=True),
                       nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                       nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.n_features = c_in

    def forward(self, x):
        return self.pool(self.features(x)).flatten(1)


@register_backbone("vgg-small", "VGG-style network of four two-convolution blocks "
                                "(32-256 channels), 256 features")
def _vgg_small(in_channels, input_size):
    net = VGGBackbone(in_channels)
    return net, net.n_features
