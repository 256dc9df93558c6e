# Licensed under a 3-clause BSD style license - see LICENSE.rst
"""
Encoding throughput of `Encoder.encode` against bare torchvision ResNet-18.

Run with ``python benchmarks/bench_encoding.py [--threads 2] [--batch 16]``.
For 64, 128 and 256 px images it times, in the same run, with the same batch
size and number of threads:

* ``Encoder.encode`` on a (N, size, size, 3) uint8 array (input checks,
  uint8 to float conversion, batching, inference mode, copy to numpy);
* plain ``torchvision.models.resnet18(weights=None)`` with ``fc`` removed,
  forward passes in eval mode under `torch.inference_mode` on ready-made
  float32 (B, 3, size, size) batches (the floor);
* the same plain forward on channels-last batches.

and prints images per second and the ratios to the plain forward pass
(best of ``--repeat`` runs).
"""

import argparse
import time

import numpy as np
import torch
import torchvision

from galmorphsearch.model import Encoder


def _best(fn, repeat):
    fn()  # warm-up
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
          f"{args.threads} threads, batch {args.batch}, best of {args.repeat}")
    print(f"{'size':>5} {'N':>4} {'encode':>10} {'plain':>10} {'plain CL':>10} "
          f"{'encode/plain':>13} {'CL/plain':>9}   (images/s)")
    rng = np.random.default_rng(0)
    for size in args.sizes:
        bench_size(size, args.batch, args.repeat, rng)


def _run_plain(model, batches):
    with torch.inference_mode():
        for b in batches:
            model(b)


def plain_reference(encoder, images, batch):
    """
    The plain torchvision ResNet-18 of ``encoder`` and its input batches.

    Returns the model (``fc`` removed, the encoder's backbone weights, eval
    mode), the float32 NCHW batches of ``images`` made in advance, and the
    same batches in channels-last memory format.
    """
    plain = torchvision.models.resnet18(weights=None)
    plain.fc = torch.nn.Identity()
    plain.load_state_dict(encoder.backbone.state_dict())
    plain.eval()
    batches = [torch.from_numpy(np.moveaxis(images[i:i + batch], -1, 1).copy()).float().div(255)
               for i in range(0, len(images), batch)]
    batches_cl = [b.contiguous(memory_format=torch.channels_last) for b in batches]
    return plain, batches, batches_cl


def bench_size(size, batch, repeat, rng):
    """Time and print one image size."""
    n = max(batch * 2, batch * (2048 // size) // 8)
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    encoder = Encoder(input_size=size)
    plain, batches, batches_cl = plain_reference(encoder, images, batch)
    t_enc = _best(lambda: encoder.encode(images, batch_size=batch), repeat)
    t_plain = _best(lambda: _run_plain(plain, batches), repeat)
    t_cl = _best(lambda: _run_plain(plain, batches_cl), repeat)
    with torch.inference_mode():
        reference = plain(batches[0]).numpy()
    np.testing.assert_allclose(encoder.encode(images[:batch]), reference, rtol=1e-4, atol=1e-5)
    print(f"{size:5d} {n:4d} {n / t_enc:10.1f} {n / t_plain:10.1f} {n / t_cl:10.1f} "
          f"{t_plain / t_enc:13.3f} {t_plain / t_cl:9.3f}")

if __name__ == "__main__":
    main()
