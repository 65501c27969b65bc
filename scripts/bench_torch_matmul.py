#!/usr/bin/env python3
"""Times PyTorch (CPU) on the same products as `cargo bench -p pouw-ml --bench matmul`.

Usage: python3 scripts/bench_torch_matmul.py [--threads 1 2] [--reps 200]

Reports the best (minimum) time over the repetitions of each product, in ms and GFLOP/s,
as `crates/ml/benches/matmul.rs` does with its `trainer` and `square` groups. Torch's
results are not bit-compatible with the consensus kernels (its paths may reorder sums);
this is a speed reference only.
"""
import argparse
import time

import torch


def shapes():
    for batch in (32, 100, 256):
        # name, build (a, b) and the product, (m, k, n)
        yield f"fwd_x_w1/b{batch}", "ab", batch, 784, 128
        yield f"wgrad_xt_dy/b{batch}", "atb", 784, batch, 128
        yield f"igrad_dy_w1t/b{batch}", "abt", batch, 128, 784
    for op in ("ab", "atb", "abt"):
        yield f"square_{op}/1024", op, 1024, 1024, 1024


def operands(op, m, k, n):
    g = torch.Generator().manual_seed(0)
    if op == "ab":
        a, b = torch.randn(m, k, generator=g), torch.randn(k, n, generator=g)
        return a, b, lambda out: torch.matmul(a, b, out=out)
    if op == "atb":
        a, b = torch.randn(k, m, generator=g), torch.randn(k, n, generator=g)
        return a, b, lambda out: torch.matmul(a.t(), b, out=out)
    a, b = torch.randn(m, k, generator=g), torch.randn(n, k, generator=g)
    return a, b, lambda out: torch.matmul(a, b.t(), out=out)


def best_time(f, out, reps):
    for _ in range(min(reps, 20)):
        f(out)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        f(out)
        best = min(best, time.perf_counter() - t)
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--reps", type=int, default=200)
    args = ap.parse_args()
    print(f"torch {torch.__version__}, mkldnn={torch.backends.mkldnn.is_available()}")
    print(f"{'shape':24} {'thr':>3} {'ms':>9} {'GFLOP/s':>8}")
    for threads in args.threads:
        torch.set_num_threads(threads)
        for name, op, m, k, n in shapes():
            _, _, f = operands(op, m, k, n)
            out = torch.empty(m, n)
            reps = 5 if m * k * n > 10**8 else args.reps
            t = best_time(f, out, reps)
            gflops = 2 * m * k * n / t / 1e9
            print(f"{name:24} {threads:>3} {t * 1e3:9.3f} {gflops:8.1f}")


if __name__ == "__main__":
    main()
