# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Sample data, synthetic galaxy fields and SDSS access.

* `load_sample_field`, `get_sample_field_paths`, `load_gz2_gallery`: real SDSS
  data bundled with the package (works offline);
* `make_synthetic_galaxy`, `make_synthetic_sample`, `iter_synthetic_sample`:
  seeded SDSS-like gri fields of galaxies of the twelve GZ2 types, with the
  parameters they were drawn from;
* `fetch_sdss_images`: SDSS frames around sky positions through astroquery,
  cached on disk, configured by `conf`.
"""

from astropy import config as _config


class Conf(_config.ConfigNamespace):
    """Configuration parameters for `galmorphsearch.datasets`."""

    data_release = _config.ConfigItem(17, "SDSS data release used by fetch_sdss_images.")
    timeout = _config.ConfigItem(60.0, "Time limit in seconds for SDSS network requests.")
    search_radius = _config.ConfigItem(
        5.0, "Radius (arcsec) within which an SDSS object must lie to find a position's field."
    )
    cache_dir = _config.ConfigItem(
        "",
        "Directory of the SDSS frame cache; empty means sdss/ in the galmorphsearch "
        "astropy cache directory.",
    )
    skyserver_url = _config.ConfigItem(
        "https://skyserver.sdss.org", "Base URL of the SDSS SkyServer (position queries)."
    )
    sas_url = _config.ConfigItem(
        "https://data.sdss.org/sas", "Base URL of the SDSS Science Archive Server (frames)."
    )


conf = Conf()

from ._fields import MultiBandField  # noqa: E402
from .sample import (  # noqa: E402
    get_sample_field_paths,
    load_gz2_gallery,
    load_hcg88_members,
    load_sample_field,
)
from .sdss import clear_sdss_cache, fetch_sdss_images, get_sdss_cache_dir  # noqa: E402
from .synthetic import (  # noqa: E402
    GZ2_TYPE_DESCRIPTIONS,
    GZ2_TYPES,
    SDSS_PIXEL_SCALE,
    SyntheticField,
    iter_synthetic_sample,
    make_synthetic_galaxy,
    make_synthetic_sample,
)

__all__ = [
    "Conf",
    "conf",
    "MultiBandField",
    "SyntheticField",
    "GZ2_TYPES",
    "GZ2_TYPE_DESCRIPTIONS",
    "SDSS_PIXEL_SCALE",
    "get_sample_field_paths",
    "load_sample_field",
    "load_gz2_gallery",
    "load_hcg88_members",
    "fetch_sdss_images",
    "get_sdss_cache_dir",
    "clear_sdss_cache",
    "make_synthetic_galaxy",
    "make_synthetic_sample",
    "iter_synthetic_sample",
]
