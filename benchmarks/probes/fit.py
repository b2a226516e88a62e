"""The probes' estimators: what a representation x (N, D) of a frame pair says about the action and the task.

how  ridge (closed form, penalty chosen on held-out training episodes) and a small MLP regressing the
     normalised action chunk y (N, k * A): R^2 overall and per action dimension
what a linear (softmax) classifier of the task label: accuracy and macro-F1
codes usage, perplexity, and the purity of code -> action cluster (k-means on the training chunks)

Everything is torch on the CPU, in float64 where it is a solve, and seeded: the same inputs give the same numbers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lara.quantize import usage_stats

RIDGE_PENALTIES = (1e-3, 1e-2, 1e-1, 1.0, 10.0)  # times the number of training samples


class Standardiser:
    """Centre and scale features on the training split; features (near) constant there are left out, since
    scaling them would blow up any test-time wiggle (a collapsed latent is constant)."""

    def __init__(self, x: torch.Tensor):
        std = x.double().std(0)
        self.used = std > 1e-4 * std.max().clamp(min=1e-12)
        if not self.used.any():  # a constant representation: keep one (then zero) column, which predicts the mean
            self.used[0] = True
        self.mean, self.std = x.double()[:, self.used].mean(0), std[self.used].clamp(min=1e-12)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x.double()[:, self.used] - self.mean) / self.std


def r2_per_output(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """R^2 of each output column (Y,); NaN where y is constant on this split (R^2 is undefined there)."""
    y, pred = y.double(), pred.double()
    ss_res = (y - pred).pow(2).sum(0)
    ss_tot = (y - y.mean(0)).pow(2).sum(0)
    r2 = 1 - ss_res / ss_tot.clamp(min=1e-30)
    return torch.where(ss_tot > 1e-8 * len(y), r2, torch.full_like(r2, float("nan")))


def summarise_r2(r2: torch.Tensor, action_dim: int) -> dict:
    """Per-output R^2 (k * A,) -> overall mean and the mean per action dimension (over the chunk's k steps)."""
    if torch.isnan(r2).all():
        raise ValueError("every action dimension is constant on the held-out episodes: R^2 is undefined")
    per_dim = r2.view(-1, action_dim)  # (k, A)
    dims = [None if torch.isnan(col).all() else float(col[~torch.isnan(col)].mean()) for col in per_dim.T]
    return {"r2": float(r2[~torch.isnan(r2)].mean()), "r2_per_dim": dims}


def _ridge_solve(u: torch.Tensor, s: torch.Tensor, vt: torch.Tensor, y: torch.Tensor, penalty: float) -> torch.Tensor:
    """Weights (D, Y) of ridge on centred x = u diag(s) vt: v diag(s / (s^2 + penalty)) u^T y."""
    return vt.T @ ((s / (s.pow(2) + penalty))[:, None] * (u.T @ y))


def ridge(train_x, train_y, test_x, validation: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Test predictions of ridge regression y = x W + b, and the penalty chosen on `validation` (a bool mask
    of training rows from held-out training episodes): fit on the others, keep the penalty of best R^2, refit."""
    scale = Standardiser(train_x)
    x, xt, y = scale(train_x), scale(test_x), train_y.double()

    def fit(rows: torch.Tensor, penalty: float):
        mx, my = x[rows].mean(0), y[rows].mean(0)
        u, s, vt = torch.linalg.svd(x[rows] - mx, full_matrices=False)
        w = _ridge_solve(u, s, vt, y[rows] - my, penalty * int(rows.sum()))
        return lambda q: (q - mx) @ w + my

    best = RIDGE_PENALTIES[0]
    if validation.any() and (~validation).sum() > 1:
        scores = []
        for penalty in RIDGE_PENALTIES:
            r2 = r2_per_output(fit(~validation, penalty)(x[validation]), y[validation])
            scores.append(float(r2[~torch.isnan(r2)].mean()) if not torch.isnan(r2).all() else -float("inf"))
        best = RIDGE_PENALTIES[max(range(len(scores)), key=scores.__getitem__)]
    return fit(torch.ones(len(x), dtype=torch.bool), best)(xt).float(), best


def mlp(train_x, train_y, test_x, seed: int, hidden: int = 128, steps: int = 600, batch: int = 256,
        lr: float = 1e-3, weight_decay: float = 1e-2) -> torch.Tensor:
    """Test predictions of a small MLP (Linear-GELU-Linear, AdamW, fixed steps) on standardised features."""
    scale = Standardiser(train_x)
    x, xt = scale(train_x).float(), scale(test_x).float()
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], hidden), torch.nn.GELU(), torch.nn.Linear(hidden, train_y.shape[1]))
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    y = train_y.float()
    for _ in range(steps):
        idx = torch.randint(0, len(x), (min(batch, len(x)),), generator=g)
        loss = F.mse_loss(net(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        return net(xt)


def classify(train_x, train_labels: torch.Tensor, test_x, test_labels: torch.Tensor, num_classes: int,
             l2: float = 1e-3) -> dict:
    """A linear softmax classifier (L-BFGS, L2 penalty) of the task: accuracy and macro-F1 on the test split."""
    scale = Standardiser(train_x)
    x, xt = scale(train_x).float(), scale(test_x).float()
    w = torch.zeros(x.shape[1] + 1, num_classes, requires_grad=True)
    xb, xtb = F.pad(x, (0, 1), value=1.0), F.pad(xt, (0, 1), value=1.0)  # a bias column
    opt = torch.optim.LBFGS([w], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(xb @ w, train_labels) + l2 * w[:-1].pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    pred = (xtb @ w.detach()).argmax(1)
    f1s = []
    for c in test_labels.unique():
        tp = ((pred == c) & (test_labels == c)).sum().item()
        precision = tp / max((pred == c).sum().item(), 1)
        recall = tp / max((test_labels == c).sum().item(), 1)
        f1s.append(0.0 if tp == 0 else 2 * precision * recall / (precision + recall))
    return {"accuracy": float((pred == test_labels).float().mean()), "macro_f1": sum(f1s) / len(f1s)}


def kmeans(x: torch.Tensor, clusters: int, seed: int, iterations: int = 50) -> torch.Tensor:
    """Centroids (C, D) of Lloyd's k-means, started from distinct rows picked with the seed."""
    g = torch.Generator().manual_seed(seed)
    distinct = x.unique(dim=0)
    centroids = distinct[torch.randperm(len(distinct), generator=g)[:clusters]].clone()
    for _ in range(iterations):
        assign = torch.cdist(x, centroids).argmin(1)
        for c in range(len(centroids)):
            if (assign == c).any():
                centroids[c] = x[assign == c].mean(0)
    return centroids


def code_stats(test_codes: torch.Tensor, num_codes: int, train_y: torch.Tensor, test_y: torch.Tensor,
               clusters: int, seed: int) -> dict:
    """Codes (N, n) of the held-out samples: fraction of the codebook used, perplexity, and code -> action
    cluster purity (share of samples whose cluster is their code's majority cluster, averaged over the n
    latent tokens); `purity_chance` is the largest cluster's share, what a code carrying nothing reaches."""
    stats = usage_stats(test_codes, num_codes)
    centroids = kmeans(train_y.float(), clusters, seed)
    cluster = torch.cdist(test_y.float(), centroids).argmin(1)  # (N,)
    purities = []
    for token in test_codes.T:  # (N,) codes of one latent token
        joint = torch.zeros(num_codes, len(centroids))
        joint.index_put_((token, cluster), torch.ones(len(token)), accumulate=True)
        purities.append(float(joint.max(1).values.sum() / len(token)))
    return {"codes_used": int(test_codes.unique().numel()), "code_usage": float(stats["code_usage"]),
            "perplexity": float(stats["perplexity"]), "purity": sum(purities) / len(purities),
            "purity_chance": float(torch.bincount(cluster).max() / len(cluster)), "clusters": len(centroids)}
