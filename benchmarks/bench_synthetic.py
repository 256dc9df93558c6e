# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Generation rate of the synthetic galaxy fields.

Run with ``python benchmarks/bench_synthetic.py``; prints the time per field
for each GZ2 type and the rate of `make_synthetic_sample`.
"""

import time

from galmorphsearch.datasets import GZ2_TYPES, make_synthetic_galaxy, make_synthetic_sample

__all__ = ["time_per_field", "main"]


def time_per_field(morphology, shape=(256, 256), repeat=10):
    """Best time (seconds) to make one field of a type."""
    make_synthetic_galaxy(morphology, seed=0, shape=shape)
    best = float("inf")
    for seed in range(repeat):
        start = time.perf_counter()
        make_synthetic_galaxy(morphology, seed=seed, shape=shape)
        best = min(best, time.perf_counter() - start)
    return best


def main():
    """Print the timings."""
    for morphology in GZ2_TYPES:
        print(f"{morphology:8s} {1e3 * time_per_field(morphology):6.1f} ms per 256x256 gri field")
    start = time.perf_counter()
    table, _ = make_synthetic_sample(10, seed=0)
    elapsed = time.perf_counter() - start
    print(f"make_synthetic_sample: {len(table)} fields in {elapsed:.2f} s "
          f"({len(table) / elapsed:.0f} fields/s)")


if __name__ == "__main__":
    main()
