"""The rows of bench/bench_learners.c in PyTorch: one training iteration of
every learner at the sizes of issue 11, float32 on the CPU, written as
learn2learn / higher users write them:

  - the MAML family (rows 2-6, 11) with functional weights and
    torch.autograd.grad(create_graph=True) for exact second order
    (create_graph=False: first order), tasks of a meta-batch one after
    another, then Adam (bench/torch_maml.py);
  - MAML on sinusoids (row 7) with the 25 tasks batched by hand into one
    computation (torch.bmm over per-task copies of the weights), the fastest
    honest formulation in PyTorch 1.13, which has no torch.func / vmap;
  - the metric learners (rows 1, 8, 9) and Reptile (row 10) with standard nn
    modules (Conv2d, BatchNorm2d, ReLU, MaxPool2d, Linear) and torch.optim.

The models are mela's: Conv-4 of 64 filters, 3x3 convolutions with bias and
padding 1, batch norm with the statistics of the batch (no running
statistics, as mela keeps none), relu, then stride-2 convolutions or 2x2
max-pools; the linear head of the MAML family; the 1-40-40-1 relu MLP.
Each row prints the floats it learns, to check against mela's count.

    python3 bench/torch_learners.py [--only ROW] [--reps N] [--threads T]

prints one line per row run:

    ROW id=1 name=protonet-20w5s ms=12.34 rss_mb=345.6 base_mb=210.0 params=111936 ...

ms: median of N iterations after 2 warm-up ones; rss_mb: peak RSS of the
process (ru_maxrss) after the row; base_mb: the peak RSS before the row was
built (the interpreter and torch alone). Run one row per process.
"""
import argparse
import math
import os
import resource
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_maml  # noqa: E402  (the functional Conv-4 and MAML meta-iteration)


def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def images(n, size=28):
    """Random binary images, about 20% ones, as bench_learners draws them."""
    return (torch.rand(n, 1, size, size) < 0.2).float()


def labels(ways, per):
    """0,0,..,1,1,..: episodes lay the support (and queries) out class by class."""
    return torch.arange(ways).repeat_interleave(per)


def conv4(maxpool, nout=0, size=28):
    """mela's Conv-4 as nn modules; nout = 0: the embedding (no head)."""
    layers, c = [], 1
    for _ in range(4):
        layers += [nn.Conv2d(c, 64, 3, stride=1 if maxpool else 2, padding=1),
                   nn.BatchNorm2d(64, track_running_stats=False), nn.ReLU()]
        if maxpool:
            layers.append(nn.MaxPool2d(2))
        size = size // 2 if maxpool else (size + 1) // 2
        c = 64
    layers.append(nn.Flatten())
    if nout:
        layers.append(nn.Linear(64 * size * size, nout))
    return nn.Sequential(*layers)


def count(params):
    return sum(p.numel() for p in params)


# ------------------------------------------------------------------ the rows
# Each builder returns (step, params, tasks): step(it) runs one training
# iteration; params are the tensors it learns.

def episode_row(N, K, Q, log_probs):
    """A metric learner's training step on one N-way K-shot episode with Q
    queries per class: support and queries through the embedding as one
    batch (as in Snell et al.'s code, and as mela embeds them), the class
    log-probabilities of the queries from log_probs(es, ys, eq), NLL, Adam."""
    model = conv4(True)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    xs, ys, xq, yq = images(N * K), labels(N, K), images(N * Q), labels(N, Q)

    def step(it):
        opt.zero_grad()
        e = model(torch.cat([xs, xq]))
        logp = log_probs(e[: N * K], ys, e[N * K:])
        loss = F.nll_loss(logp, yq)
        (logp.argmax(1) == yq).float().mean()  # mela's plan reports the accuracy too
        loss.backward()
        opt.step()
        return loss.item()

    return step, list(model.parameters()), 1


def row_protonet():
    N, K, Q = 20, 5, 15

    def log_probs(es, ys, eq):
        protos = es.view(N, K, -1).mean(1)  # the support comes class by class
        d = ((eq.unsqueeze(1) - protos.unsqueeze(0)) ** 2).sum(2)
        return F.log_softmax(-d, dim=1)

    return episode_row(N, K, Q, log_probs)


def row_maml(ways, steps, lr, meta_batch, first_order, maxpool=False, queries=1):
    ps = torch_maml.init(ways, maxpool)
    opt = torch.optim.Adam(ps, lr=1e-3)
    tasks = [(images(ways), labels(ways, 1), images(ways * queries), labels(ways, queries))
             for _ in range(meta_batch)]

    def step(it):
        return torch_maml.meta_iteration(ps, opt, tasks, steps, lr, first_order, maxpool)

    return step, ps, meta_batch


def sinusoids(B, K):
    """B sinusoid tasks as MAML draws them (y = A sin(x - phase), A in
    [0.1, 5], phase in [0, pi], x in [-5, 5]), K support and K query points
    each: xs, ys, xq, yq of shape (B, K, 1)."""
    amp = torch.empty(B, 1, 1).uniform_(0.1, 5.0)
    phase = torch.empty(B, 1, 1).uniform_(0, math.pi)
    xs = torch.empty(B, K, 1).uniform_(-5, 5)
    xq = torch.empty(B, K, 1).uniform_(-5, 5)
    return xs, amp * torch.sin(xs - phase), xq, amp * torch.sin(xq - phase)


def row_sinusoid():
    """Exact MAML on 25 sinusoid tasks as one batched computation: every
    weight expanded to (25, ...) per-task copies, the inner gradient of the
    sum of task losses with respect to the copies (each task's own), and
    the forward passes as batched matrix products."""
    B, K, lr = 25, 10, 0.01
    sizes = [(40, 1), (40, 40), (1, 40)]
    ps = []
    for out, inp in sizes:
        bound = 1.0 / math.sqrt(inp)
        ps += [torch.empty(out, inp).uniform_(-bound, bound), torch.empty(out).uniform_(-bound, bound)]
    ps = [p.requires_grad_() for p in ps]
    opt = torch.optim.Adam(ps, lr=1e-3)
    xs, ys, xq, yq = sinusoids(B, K)

    def fwd(ws, x):
        h = x
        for i in range(3):
            h = torch.baddbmm(ws[2 * i + 1].unsqueeze(1), h, ws[2 * i].transpose(1, 2))
            if i < 2:
                h = F.relu(h)
        return h

    def step(it):
        opt.zero_grad()
        ws = [p.unsqueeze(0).expand(B, *p.shape) for p in ps]
        inner = ((fwd(ws, xs) - ys) ** 2).mean((1, 2)).sum()  # sum of per-task MSEs
        grads = torch.autograd.grad(inner, ws, create_graph=True)
        fast = [w - lr * g for w, g in zip(ws, grads)]
        loss = ((fwd(fast, xq) - yq) ** 2).mean()  # mean over tasks of the query MSE
        loss.backward()
        opt.step()
        return loss.item()

    return step, ps, B


def row_siamese():
    P = 128
    model, head = conv4(True), nn.Linear(64, 1)
    params = list(model.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=1e-3)
    a, b = images(P), images(P)
    same = (torch.arange(P) % 2).float()

    def step(it):
        opt.zero_grad()
        e = model(torch.cat([a, b]))  # both sides in one batch, as mela embeds them
        z = head((e[:P] - e[P:]).abs()).squeeze(1)
        loss = F.binary_cross_entropy_with_logits(z, same)
        ((z > 0).float() == same).float().mean()
        loss.backward()
        opt.step()
        return loss.item()

    return step, params, 1


def row_matchnet():
    N, K, Q = 20, 1, 5

    def log_probs(es, ys, eq):
        cos = F.normalize(eq, dim=1, eps=1e-8) @ F.normalize(es, dim=1, eps=1e-8).t()
        return torch.log(F.softmax(cos, dim=1) @ F.one_hot(ys, N).float())

    return episode_row(N, K, Q, log_probs)


def row_reptile():
    """Nichol et al. on Omniglot as mela's defaults have it: 5-way 10-shot
    tasks, 5 inner Adam steps (beta1 = 0, rate 0.001) on minibatches of 10
    of the shuffled support, the query score of the adapted weights, then
    theta += eps * mean(phi - theta), eps = 1 annealed linearly to 0."""
    N, K, steps, batch, mb, iterations = 5, 10, 5, 10, 5, 100000
    model, fast = conv4(False, N), conv4(False, N)
    tasks = []
    for _ in range(mb):
        perm = torch.randperm(N * K)
        tasks.append((images(N * K), labels(N, K)[perm], images(N), labels(N, 1)))

    def step(it):
        diff = [torch.zeros_like(p) for p in model.parameters()]
        total = 0.0
        for xs, ys, xq, yq in tasks:
            fast.load_state_dict(model.state_dict())
            opt = torch.optim.Adam(fast.parameters(), lr=1e-3, betas=(0.0, 0.999))
            for s in range(steps):
                rows = torch.arange(s * batch, (s + 1) * batch) % (N * K)
                opt.zero_grad()
                F.cross_entropy(fast(xs[rows]), ys[rows]).backward()
                opt.step()
            with torch.no_grad():
                out = fast(xq)
                total += F.cross_entropy(out, yq).item() / mb
                (out.argmax(1) == yq).float().mean()
                for d, p, q in zip(diff, model.parameters(), fast.parameters()):
                    d += q - p
        eps = 1.0 * (1.0 - (it - 1) / iterations)
        with torch.no_grad():
            for d, p in zip(diff, model.parameters()):
                p += eps / mb * d
        return total

    return step, list(model.parameters()), mb


def row_mamlpp():
    """MAML++ (Antoniou et al. 2019) with every switch, in its exact phase:
    learned per-layer per-step inner rates (a scalar per adapted tensor and
    step), per-step batch-norm weights and biases (steps + 1 copies, not
    adapted), the multi-step loss with its annealed weights, second order."""
    N, steps, lr, mb = 5, 5, 0.1, 16
    ps = torch_maml.init(N)  # the model's views (its bn views unused, as in mela)
    adapt = [i for i in range(len(ps)) if i >= 16 or i % 4 < 2]  # conv and head
    bn = [i for i in range(16) if i % 4 >= 2]
    lrs = [[torch.tensor(lr, requires_grad=True) for _ in adapt] for _ in range(steps)]
    bns = [[ps[i].detach().clone().requires_grad_() for i in bn] for _ in range(steps + 1)]
    params = ps + [r for s in lrs for r in s] + [b for s in bns for b in s]
    opt = torch.optim.Adam(params, lr=1e-3)
    # the step weights after annealing (mela_msl_weights): 0.03/k each, the rest last
    v = [0.03 / steps] * (steps - 1) + [1.0 - (steps - 1) * 0.03 / steps]
    tasks = [(images(N), labels(N, 1), images(N), labels(N, 1)) for _ in range(mb)]

    def net(fast, s, x):
        ws = list(fast)
        for k, i in enumerate(bn):
            ws[i] = bns[s][k]
        return torch_maml.forward(ws, x)

    def step(it):
        opt.zero_grad()
        total = 0.0
        for xs, ys, xq, yq in tasks:
            fast = list(ps)
            meta = 0.0
            for s in range(steps):
                loss = F.cross_entropy(net(fast, s, xs), ys)
                grads = torch.autograd.grad(loss, [fast[i] for i in adapt], create_graph=True)
                for j, i in enumerate(adapt):
                    fast[i] = fast[i] - lrs[s][j] * grads[j]
                out = net(fast, s + 1, xq)
                meta = meta + v[s] * F.cross_entropy(out, yq)
            (out.argmax(1) == yq).float().mean()
            (meta / mb).backward()
            total += meta.item() / mb
        opt.step()
        return total

    return step, params, mb


ROWS = [
    ("protonet-20w5s", row_protonet),
    ("fomaml-20w1s", lambda: row_maml(20, 5, 0.1, 16, True)),
    ("maml-20w1s", lambda: row_maml(20, 5, 0.1, 16, False)),
    ("fomaml-5w1s", lambda: row_maml(5, 1, 0.4, 32, True)),
    ("maml-5w1s", lambda: row_maml(5, 1, 0.4, 32, False)),
    ("maml-maxpool-5w1s", lambda: row_maml(5, 1, 0.4, 32, False, maxpool=True, queries=15)),
    ("maml-sinusoid", row_sinusoid),
    ("siamese-128", row_siamese),
    ("matchnet-20w1s", row_matchnet),
    ("reptile-5w", row_reptile),
    ("mamlpp-5w", row_mamlpp),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", help="a row's number (1..%d) or name" % len(ROWS))
    a = ap.parse_args()
    names = [n for n, _ in ROWS]
    if a.only is None:
        ids = range(1, len(ROWS) + 1)
    elif a.only in names:
        ids = [names.index(a.only) + 1]
    elif a.only.isdigit() and 1 <= int(a.only) <= len(ROWS):
        ids = [int(a.only)]
    else:
        ap.error("no row '%s'" % a.only)
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    base = rss_mb()
    for i in ids:
        name, build = ROWS[i - 1]
        step, params, tasks = build()
        times, loss = [], 0.0
        for r in range(a.reps + 2):
            t0 = time.perf_counter()
            loss = step(r + 1)
            if r >= 2:
                times.append(time.perf_counter() - t0)
        print("ROW id=%d name=%s ms=%.4f rss_mb=%.1f base_mb=%.1f params=%d tasks=%d threads=%d "
              "reps=%d loss=%.4g" % (i, name, 1e3 * statistics.median(times), rss_mb(), base,
                                     count(params), tasks, a.threads, a.reps, loss), flush=True)


if __name__ == "__main__":
    main()
