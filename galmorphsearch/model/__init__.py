# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Encoders of galaxy images, and how to train them.

* `Encoder`: galaxy image to latent vector. By default the TSGICAS
  ResNet-18 (Seo et al. 2023, section 3.1); other backbones
  (`~galmorphsearch.model.backbones.BACKBONES`: trimmed ResNet-18, small
  ViT and their hybrid, VGG-style) and input modes (colour, grey, with a
  residual channel). Carries its provenance (`Encoder.metadata`,
  `Encoder.weights_hash`), encodes in batches (`Encoder.encode`) and keeps
  its weights in safe files (`Encoder.save`, `Encoder.load`);
* `Decoder` and `Autoencoder`: the mirror of the encoder and the pair;
  `train_autoencoder` and `AutoencoderModule` train it with PyTorch
  Lightning (CPU or GPUs);
* `train_contrastive` and `ContrastiveModule`: SimCLR-style contrastive
  training after Wei et al. (2022), with `info_nce_loss` and the two-view
  augmentation `TwoViewDataset`;
* `train_classifier` and `ClassifierModule`: supervised CNN classifiers whose
  penultimate layer is the latent space;
* `Encoder.pretrained`, `available_pretrained`: the encoders shipped with
  the package, trained on real SDSS galaxies;
* `save_weights`, `load_weights`, `state_dict_hash`: safetensors weight files
  that can never execute code.
"""

from .autoencoder import *  # noqa: F403
from .autoencoder import __all__ as _autoencoder_all
from .contrastive import *  # noqa: F403
from .contrastive import __all__ as _contrastive_all
from .decoder import *  # noqa: F403
from .decoder import __all__ as _decoder_all
from .encoder import *  # noqa: F403
from .encoder import __all__ as _encoder_all
from .pretrained import *  # noqa: F403
from .pretrained import __all__ as _pretrained_all
from .supervised import *  # noqa: F403
from .supervised import __all__ as _supervised_all
from .training import *  # noqa: F403
from .training import __all__ as _training_all
from .weights import *  # noqa: F403
from .weights import __all__ as _weights_all

__all__ = [*_encoder_all, *_decoder_all, *_autoencoder_all, *_training_all, *_weights_all,
           *_supervised_all, *_contrastive_all, *_pretrained_all]
