"""The same MAML meta-iteration as bench/bench_maml.c, in PyTorch: Conv-4
(64 filters, 3x3, stride-2 convolutions, batch norm with batch statistics,
relu; linear head) on random 28x28 images, exact second order through the
inner steps with torch.autograd.grad(create_graph=True) (first order:
create_graph=False), tasks of a meta-batch one after another as learn2learn
and higher do, then an Adam step. Prints the median time per meta-iteration.

    python3 bench/torch_maml.py [--reps N] [--threads T] [--only NAME]
"""
import argparse
import statistics
import time

import torch
import torch.nn.functional as F

SETTINGS = [
    ("maml-5w1s", 5, 1, 1, 1, 32, False, 0.4),
    ("fomaml-5w1s", 5, 1, 1, 1, 32, True, 0.4),
    ("maml-20w1s", 20, 1, 1, 5, 16, False, 0.1),
    ("fomaml-20w1s", 20, 1, 1, 5, 16, True, 0.1),
]


def init(ways, maxpool=False, size=28):
    """Conv-4 weights as mela lays them out (conv, bias, bn weight, bn bias
    per block; head): stride-2 blocks (28 -> 14 -> 7 -> 4 -> 2), or stride-1
    blocks with 2x2 max-pools (28 -> 14 -> 7 -> 3 -> 1)."""
    ps, c = [], 1
    for _ in range(4):
        w = torch.empty(64, c, 3, 3)
        torch.nn.init.xavier_uniform_(w)
        ps += [w, torch.zeros(64), torch.ones(64), torch.zeros(64)]
        c = 64
        size = size // 2 if maxpool else (size + 1) // 2
    w = torch.empty(ways, 64 * size * size)
    torch.nn.init.xavier_uniform_(w)
    ps += [w, torch.zeros(ways)]
    return [p.requires_grad_() for p in ps]


def forward(ps, x, maxpool=False):
    h = x
    for i in range(4):
        w, b, g, beta = ps[4 * i : 4 * i + 4]
        h = F.conv2d(h, w, b, stride=1 if maxpool else 2, padding=1)
        h = F.batch_norm(h, None, None, g, beta, training=True, eps=1e-5)
        h = F.relu(h)
        if maxpool:
            h = F.max_pool2d(h, 2)
    return F.linear(h.flatten(1), ps[16], ps[17])


def meta_iteration(ps, opt, tasks, steps, lr, first_order, maxpool=False):
    opt.zero_grad()
    total = 0.0
    for xs, ys, xq, yq in tasks:
        fast = ps
        for _ in range(steps):
            loss = F.cross_entropy(forward(fast, xs, maxpool), ys)
            grads = torch.autograd.grad(loss, fast, create_graph=not first_order)
            fast = [p - lr * g for p, g in zip(fast, grads)]
        out = forward(fast, xq, maxpool)
        loss = F.cross_entropy(out, yq)
        acc = (out.argmax(1) == yq).float().mean()  # mela's plan reports it too
        (loss / len(tasks)).backward()
        total += loss.item() / len(tasks)
    opt.step()
    return total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    print(f"torch {torch.__version__}, threads {a.threads}, median of {a.reps} meta-iterations (after 2 warm-up)\n")
    print("| setting | meta-batch | steps | ms / meta-iteration | tasks/s |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, ways, shots, queries, steps, mb, fo, lr in SETTINGS:
        if a.only and a.only != name:
            continue
        ps = init(ways)
        opt = torch.optim.Adam(ps, lr=0.001)
        tasks = []
        for _ in range(mb):
            xs = (torch.rand(ways * shots, 1, 28, 28) < 0.2).float()
            xq = (torch.rand(ways * queries, 1, 28, 28) < 0.2).float()
            ys = torch.arange(ways).repeat_interleave(shots)
            yq = torch.arange(ways).repeat_interleave(queries)
            tasks.append((xs, ys, xq, yq))
        times = []
        for i in range(a.reps + 2):
            t0 = time.perf_counter()
            meta_iteration(ps, opt, tasks, steps, lr, fo)
            if i >= 2:
                times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        print(f"| {name} | {mb} | {steps} | {1e3 * med:.1f} | {mb / med:.0f} |", flush=True)


if __name__ == "__main__":
    main()
