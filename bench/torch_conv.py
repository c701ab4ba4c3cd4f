"""PyTorch's convolutions at the Conv-4 layer shapes of `bench_conv --speed`:
forward (torch.nn.functional.conv2d, no bias: mela's kernel adds none),
gradient with respect to the input (torch.nn.grad.conv2d_input) and with
respect to the weights (torch.nn.grad.conv2d_weight); both gradients call
aten's convolution_backward, the kernel autograd calls. float32, CPU, on
--threads threads (speed.sh: 1, as mela's kernels), median of --reps calls
after one warm-up. A kernel counts 2*N*OC*OH*OW*C*KH*KW flops.

    python3 bench/torch_conv.py [--reps N] [--threads T]

prints lines as bench_conv --speed does:

    CONV net=maxpool n=20 c=1 hw=28 oc=64 stride=1 kernel=fwd ms=... gflops=...
"""
import argparse
import statistics
import time

import torch
import torch.nn.functional as F

LAYERS = [("maxpool", 1, 28, 1), ("maxpool", 64, 14, 1), ("maxpool", 64, 7, 1), ("maxpool", 64, 3, 1),
          ("stride2", 1, 28, 2), ("stride2", 64, 14, 2), ("stride2", 64, 7, 2), ("stride2", 64, 4, 2)]
BATCHES = [20, 400]


def median_seconds(fn, reps):
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    with torch.no_grad():
        for n in BATCHES:
            for net, c, hw, stride in LAYERS:
                x = torch.rand(n, c, hw, hw) - 0.5
                w = torch.rand(64, c, 3, 3) - 0.5
                y = F.conv2d(x, w, None, stride, 1)
                dy = torch.rand_like(y) - 0.5
                oh, ow = y.shape[2], y.shape[3]
                flops = 2.0 * n * 64 * oh * ow * c * 9
                kernels = [
                    ("fwd", lambda: F.conv2d(x, w, None, stride, 1)),
                    ("dx", lambda: torch.nn.grad.conv2d_input(x.shape, w, dy, stride, 1)),
                    ("dw", lambda: torch.nn.grad.conv2d_weight(x, w.shape, dy, stride, 1)),
                ]
                for name, fn in kernels:
                    t = median_seconds(fn, a.reps)
                    print("CONV net=%s n=%d c=%d hw=%d oc=64 stride=%d kernel=%s ms=%.4f gflops=%.2f"
                          % (net, n, c, hw, stride, name, 1e3 * t, flops / t * 1e-9), flush=True)


if __name__ == "__main__":
    main()
