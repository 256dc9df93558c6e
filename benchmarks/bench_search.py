# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Time exact similarity search against plain NumPy brute force.

Run with ``python benchmarks/bench_search.py [max_rows]`` (default 1000000).
For N = 10^4, 10^5, 10^6 database rows of 512-d float32 latents it prints
the time per query of `~galmorphsearch.search.ExactBackend` (k = 10), for
one query at a time and for a batch of 100 queries, next to a plain NumPy
brute force in the same run (``||b||^2 - 2 a.b`` with one float32 matrix
product over the whole database, then ``argpartition`` and ``argsort``) and
the ratio of the two. It also checks that both return the same neighbours.

The latents are random normal vectors, not encoder outputs: search time
does not depend on the values, only on N, D, k and the number of queries.
Peak memory at N = 10^6 is about 2 GB for the database plus 0.4 GB for the
brute force's 100 x 10^6 score matrix.
"""

import sys
import time
from functools import partial

import numpy as np

from galmorphsearch.search import ExactBackend

DIM = 512
K = 10


def brute_force(queries, database, db_sqnorms, k):
    """Plain NumPy: one matrix product over the whole database."""
    scores = db_sqnorms[np.newaxis, :] - 2.0 * (queries @ database.T)
    part = np.argpartition(scores, k - 1, axis=1)[:, :k]
    order = np.argsort(np.take_along_axis(scores, part, axis=1), axis=1)
    return np.take_along_axis(part, order, axis=1)


def best_time(func, n_repeat):
    times = []
    for _ in range(n_repeat):
        t0 = time.perf_counter()
        func()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(max_rows=1_000_000):
    rng = np.random.default_rng(0)
    print(f"Exact search, D={DIM} float32 random normal latents, k={K}; best of repeats")
    print(f"{'N':>9} {'queries':>8} {'exact ms/query':>15} {'numpy ms/query':>15} {'ratio':>6}")
    n = 10_000
    while n <= max_rows:
        database = rng.standard_normal((n, DIM), dtype=np.float32)
        queries = rng.standard_normal((100, DIM), dtype=np.float32)
        backend = ExactBackend().fit(database)
        sqn = np.einsum("ij,ij->i", database, database)
        idx, _ = backend.search(queries, K)
        assert np.array_equal(idx, brute_force(queries, database, sqn, K))
        n_repeat = 5 if n <= 100_000 else 2
        for n_q in (1, 100):
            q = queries[:n_q]
            t_exact = best_time(partial(backend.search, q, K), n_repeat)
            t_numpy = best_time(partial(brute_force, q, database, sqn, K), n_repeat)
            print(f"{n:>9} {n_q:>8} {1e3 * t_exact / n_q:>15.3f} {1e3 * t_numpy / n_q:>15.3f} "
                  f"{t_exact / t_numpy:>6.2f}")
        del database, backend, sqn
        n *= 10


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
