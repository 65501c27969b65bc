#!/usr/bin/env python3
"""Times PyTorch (CPU) on the same products as `cargo bench -p pouw-ml --bench matmul`, and on
the whole SGD step that `cargo bench -p pouw-ml --bench iteration` calls the plain step.

Usage: python3 scripts/bench_torch_matmul.py [--threads 1 2] [--reps 200] [--step-only]

Products: the best (minimum) time over the repetitions of each product, in ms and GFLOP/s,
as `crates/ml/benches/matmul.rs` does with its `trainer` and `square` groups.

Step (`--step-only` skips the products): one training step of the MLP 784-128-10 (ReLU) at
batch 32, 100 and 256, as the engine's `TrainState::sgd_step` does it: forward, mean softmax
cross-entropy and the correct count from the same logits, backward, plain SGD update (lr 0.3, no
momentum), the usual `zero_grad(set_to_none=True)`, `loss.backward()`, `optimizer.step()`
loop. Inputs are MNIST-like (4 in 5 pixels zero, the rest uniform in (0, 1)) like the Rust
bench's. The best and the median time per step over the repetitions, wall clock and the
thread's CPU clock.

Torch's results are not bit-compatible with the consensus kernels (its paths may reorder sums);
this is a speed reference only.
"""
import argparse
import statistics
import time

import torch
import torch.nn.functional as F


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


def step_times(batch, reps):
    """(best wall, median wall, best thread CPU) seconds of one SGD step at `batch`."""
    g = torch.Generator().manual_seed(batch)
    mask = torch.rand(batch, 784, generator=g) < 0.2
    x = torch.where(mask, torch.rand(batch, 784, generator=g), torch.zeros(()))
    y = torch.randint(0, 10, (batch,), generator=g)
    torch.manual_seed(1)
    model = torch.nn.Sequential(
        torch.nn.Linear(784, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10)
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.3, momentum=0.0)

    def step():
        opt.zero_grad(set_to_none=True)
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        correct = (logits.argmax(dim=1) == y).sum()
        loss.backward()
        opt.step()
        return loss.item(), int(correct)

    for _ in range(min(reps, 50)):
        step()
    walls, cpus = [], []
    for _ in range(reps):
        t, c = time.perf_counter(), time.thread_time()
        step()
        cpus.append(time.thread_time() - c)
        walls.append(time.perf_counter() - t)
    return min(walls), statistics.median(walls), min(cpus)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--step-only", action="store_true", help="only the SGD step table")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, mkldnn={torch.backends.mkldnn.is_available()}")
    print(f"{'sgd step 784-128-10':24} {'thr':>3} {'best ms':>9} {'median ms':>9} {'cpu ms':>9}")
    for threads in args.threads:
        torch.set_num_threads(threads)
        for batch in (32, 100, 256):
            best, median, cpu = step_times(batch, max(args.reps, 400))
            cpu_s = f"{cpu * 1e3:9.3f}" if threads == 1 else f"{'-':>9}"
            print(f"{f'b{batch}':24} {threads:>3} {best * 1e3:9.3f} {median * 1e3:9.3f} {cpu_s}")
    if args.step_only:
        return
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
