"""Why `crates/frostnet/src/tensor/winograd_1d.rs` runs the schemes it runs.

Builds 1-D Winograd (Toom-Cook) algorithms F(m, r) for chosen interpolation points, and tap
splits of a 7-tap kernel into smaller algorithms side by side, then emulates them in f32 the way
the Rust engine computes (kernel transform in f64 rounded once, input transform, per-plane dot
products over `c` channels and output transform in f32) against an f64 correlation, on N(0, 1)
and post-ReLU inputs with He-initialised kernels. Prints planes per tile, the saving in
multiplications and the worst |error| / max(1, |y|): the engine's tests hold every fast path
to 1e-5 by that measure.

    python tools/winograd_1d_error.py        (needs numpy; ~15 s)
"""
from fractions import Fraction

import numpy as np


def toom_cook(m, r, points):
    """(Aᵀ, G, Bᵀ) of F(m, r) on the finite `points` plus infinity, as f64 arrays."""
    n = m + r - 1
    assert len(points) == n - 1
    pts = [Fraction(p) for p in points]
    at = np.zeros((m, n))
    g = np.zeros((n, r))
    for j, a in enumerate(pts):
        denom = np.prod([float(a - b) for b in pts if b != a])
        for i in range(m):
            at[i, j] = float(a**i)
        for k in range(r):
            g[j, k] = float(a**k) / denom
    at[m - 1, n - 1] = 1.0
    g[n - 1, r - 1] = 1.0
    return at, g, solve_bt(at, g, m, r)


def solve_bt(at, g, m, r):
    """The Bᵀ with Σ_j Aᵀ[i,j] G[j,k] Bᵀ[j,l] = [l == i + k] (unique for these points),
    rounded to the small rationals it is made of."""
    planes, length = g.shape[0], m + r - 1
    rows, rhs = [], []
    for i in range(m):
        for k in range(r):
            for l in range(length):
                row = np.zeros((planes, length))
                row[:, l] = at[i, :] * g[:, k]
                rows.append(row.ravel())
                rhs.append(1.0 if l == i + k else 0.0)
    sol = np.linalg.lstsq(np.array(rows), np.array(rhs), rcond=None)[0]
    bt = np.array([float(Fraction(v).limit_denominator(64)) for v in sol]).reshape(planes, length)
    check(at, g, bt, m, r)
    return bt


def check(at, g, bt, m, r):
    for i in range(m):
        for k in range(r):
            for l in range(m + r - 1):
                s = np.sum(at[i, :] * g[:, k] * bt[:, l])
                assert abs(s - (l == i + k)) < 1e-9, (i, k, l, s)


def side_by_side(m, r, parts):
    """Taps split into consecutive groups, each computed by its own (Aᵀ, G, Bᵀ)."""
    length = m + r - 1
    ats, gs, bts, k0 = [], [], [], 0
    for taps, (at, g, bt) in parts:
        planes = g.shape[0]
        gp = np.zeros((planes, r))
        gp[:, k0:k0 + taps] = g
        bp = np.zeros((planes, length))
        bp[:, k0:k0 + bt.shape[1]] = bt
        ats.append(at)
        gs.append(gp)
        bts.append(bp)
        k0 += taps
    at, g, bt = np.hstack(ats), np.vstack(gs), np.vstack(bts)
    check(at, g, bt, m, r)
    return at, g, bt


def direct(m, r):
    """The definition as a 'scheme': one plane per (output, tap)."""
    at, g, bt = np.zeros((m, m * r)), np.zeros((m * r, r)), np.zeros((m * r, m + r - 1))
    for i in range(m):
        for k in range(r):
            at[i, i * r + k], g[i * r + k, k], bt[i * r + k, i + k] = 1, 1, 1
    return at, g, bt


def worst_error(at, g, bt, m, r, c, seed=0, batches=20, tiles=2000):
    rng = np.random.default_rng(seed)
    f32 = np.float32
    worst = 0.0
    for b in range(batches):
        d = rng.standard_normal((tiles, c, m + r - 1)).astype(f32)
        if b % 2:
            d = np.maximum(d, 0)
        k = rng.standard_normal((c, r)) * np.sqrt(2 / (r * c))
        u = (k @ g.T).astype(f32)
        v = np.einsum("pl,tcl->tcp", bt.astype(f32), d).astype(f32)
        mm = np.einsum("tcp,cp->tp", v, u).astype(f32)
        y = np.einsum("ip,tp->ti", at.astype(f32), mm).astype(f32)
        want = np.stack(
            [np.einsum("tck,ck->t", d[:, :, i:i + r].astype(np.float64), k) for i in range(m)], 1)
        worst = max(worst, float((np.abs(y - want) / np.maximum(1, np.abs(want))).max()))
    return worst


def main():
    f23 = toom_cook(2, 3, [0, 1, -1])
    f24 = toom_cook(2, 4, [0, 1, -1, 2])
    f33 = toom_cook(3, 3, [0, 1, -1, 2])
    candidates = [
        ("7 taps: direct", 2, 7, direct(2, 7)),
        ("7 taps: F(2,7) on 0,±1,±2,±1/2", 2, 7, toom_cook(2, 7, [0, 1, -1, 2, -2, 0.5, -0.5])),
        ("7 taps: F(2,4) + F(2,3)  [used]", 2, 7, side_by_side(2, 7, [(4, f24), (3, f23)])),
        ("7 taps: F(3,3) + F(3,3) + 1", 3, 7,
         side_by_side(3, 7, [(3, f33), (3, f33), (1, direct(3, 1))])),
        ("7 taps: F(4,3) + F(4,3) + 1", 4, 7,
         side_by_side(4, 7, [(3, toom_cook(4, 3, [0, 1, -1, 2, -2]))] * 2 + [(1, direct(4, 1))])),
        ("3 taps: F(2,3)  [used]", 2, 3, f23),
        ("3 taps: F(4,3) on 0,±1,±2", 4, 3, toom_cook(4, 3, [0, 1, -1, 2, -2])),
    ]
    for name, m, r, (at, g, bt) in candidates:
        c = 192 if r == 7 else 384
        err = worst_error(at, g, bt, m, r, c)
        print(f"{name:34} planes {g.shape[0]:2} per {m} outputs, {m * r / g.shape[0]:.2f}x fewer "
              f"multiplications, max |Bᵀ| {np.abs(bt).max():.2f}, worst error {err:.2e} (c={c})")
    at, g, bt = side_by_side(2, 7, [(4, f24), (3, f23)])
    np.set_printoptions(linewidth=120)
    print("F(2,4) + F(2,3): Aᵀ, G, Bᵀ =", at, g, bt, sep="\n")


if __name__ == "__main__":
    main()
