# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
The TSGICAS convolutional autoencoder (Seo et al. 2023, section 3.1).

* `Encoder`: ResNet-18 from galaxy image to 512-d latent vector, with its
  provenance (`Encoder.metadata`, `Encoder.weights_hash`), batched
  `Encoder.encode` and safe weight files (`Encoder.save`, `Encoder.load`);
* `Decoder` and `Autoencoder`: the mirror of the encoder and the pair;
* `train_autoencoder` and `AutoencoderModule`: training with PyTorch
  Lightning (CPU or GPUs);
* `save_weights`, `load_weights`, `state_dict_hash`: safetensors weight files
  that can never execute code.
"""

from .autoencoder import *  # noqa: F403
from .autoencoder import __all__ as _autoencoder_all
from .decoder import *  # noqa: F403
from .decoder import __all__ as _decoder_all
from .encoder import *  # noqa: F403
from .encoder import __all__ as _encoder_all
from .supervised import *  # noqa: F403
from .supervised import __all__ as _supervised_all
from .training import *  # noqa: F403
from .training import __all__ as _training_all
from .weights import *  # noqa: F403
from .weights import __all__ as _weights_all

__all__ = [*_encoder_all, *_decoder_all, *_autoencoder_all, *_training_all, *_weights_all,
           *_supervised_all]
