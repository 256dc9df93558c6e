# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Time the TSGICAS preprocessing per galaxy on the bundled HCG 88 SDSS field.

Run with ``python benchmarks/bench_preprocessing.py``. Prints the wall-clock
time per galaxy of `GalaxyCutout` (each call reads the bands and detects
sources again) and of `make_cutouts` (one detection for the field), with
and without deblending, for the HCG 88 members and the other brightest
sources of the field, at size 256.
"""

import time
import warnings
from importlib.resources import files

import numpy as np

from galmorphsearch.datasets import load_hcg88_members
from galmorphsearch.preprocessing import GalaxyCutout, make_cutouts
from galmorphsearch.utils.exceptions import CutoutWarning


def main(n_repeat=3, n_extra=7):
    data = files("galmorphsearch") / "data" / "hcg88"
    bands = [str(data / f"reprojected_sdss_{b}.fits.bz2") for b in "gri"]
    members = list(load_hcg88_members()["coord"])
    first = GalaxyCutout(*bands, members[0], size=256, seed=0)
    segm = first.segmentation
    areas = np.bincount(segm.data.ravel())
    areas[0] = 0
    member_xy = [tuple(float(v) for v in first.wcs.world_to_pixel(m)) for m in members]
    member_labels = {int(segm.data[int(round(y)), int(round(x))]) for x, y in member_xy}
    extra = []
    for label in np.argsort(areas)[::-1]:
        if label and label not in member_labels and len(extra) < n_extra:
            ys, xs = np.nonzero(segm.data == label)
            extra.append((float(xs.mean()), float(ys.mean())))
    positions = member_xy + extra
    print(f"{len(positions)} galaxies (3 HCG 88 members + {len(extra)} brightest other "
          "sources), size 256")
    for deblend in (False, True):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CutoutWarning)
            best = np.inf
            for _ in range(n_repeat):
                t0 = time.perf_counter()
                for pos in positions:
                    cut = GalaxyCutout(*bands, pos, size=256, deblend=deblend, rotate=True,
                                       seed=0)
                    cut.image, cut.background  # noqa: B018 - force the lazy rendering
                best = min(best, (time.perf_counter() - t0) / len(positions))
            print(f"GalaxyCutout  deblend={deblend!s:5}: {1e3 * best:7.1f} ms per galaxy")
            best = np.inf
            for _ in range(n_repeat):
                t0 = time.perf_counter()
                cuts = make_cutouts(*bands, positions, size=256, deblend=deblend, rotate=True,
                                    seed=0)
                for cut in cuts:
                    cut.image, cut.background  # noqa: B018
                best = min(best, (time.perf_counter() - t0) / len(positions))
            print(f"make_cutouts  deblend={deblend!s:5}: {1e3 * best:7.1f} ms per galaxy")


if __name__ == "__main__":
    main()
