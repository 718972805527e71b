#!/usr/bin/env python3
"""PyTorch (CPU) twin of ddis's FNO surrogate, EDM denoiser and reduced-step
DAPS sampler, for timing only (random weights).

Mirrors, shape for shape and FLOP for FLOP:

* trainer/src/model/fno.rs + spectral.rs   (FNO surrogate, `FnoConfig`)
* trainer/src/model/denoiser.rs + edm.rs   (FiLM denoiser, EDM preconditioning)
* trainer/src/model/noise.rs               (smooth RBF noise  L Z L^T)
* trainer/src/sample/daps.rs + guide.rs    (DAPS, surrogate guide)
* trainer/benches/fno_step.rs              (the training-step benchmark)

Two implementations of the spectral convolution (``--spectral``):

* ``fft``: the usual PyTorch FNO: channels-first, ``torch.fft.rfft2`` ->
  complex einsum on the kept ``2m x m`` modes -> ``torch.fft.irfft2``;
  pointwise skips as 1x1 convolutions.
* ``dft``: ddis's own scheme: channels-last, truncated DFT as real matrix
  products with precomputed cos/sin bases, channel mixing as one batched
  real product with ``[[Wr, Wi], [-Wi, Wr]]``.

Both keep rows ``0..m`` and ``H-m..H`` and columns ``0..m`` and agree to f32
round-off (``--check`` asserts it).

Run one process per thread count; the thread count is fixed with
``torch.set_num_threads`` (set OMP_NUM_THREADS / MKL_NUM_THREADS too, before
Python starts). Results are printed as ``RESULT {json}`` lines.
"""

import argparse
import json
import math
import os
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

# --------------------------------------------------------------------------
# Configs (copied from the Rust presets)
# --------------------------------------------------------------------------

# FnoConfig::new(width, modes, layers, pad_fraction, proj_width)
FNO_CONFIGS = {
    "device": dict(width=16, modes=8, layers=4, pad_fraction=0.25, proj_width=64),
    "width32-modes12": dict(width=32, modes=12, layers=4, pad_fraction=0.5, proj_width=128),
    # FnoConfig::host() is the same network as width32-modes12.
    "host": dict(width=32, modes=12, layers=4, pad_fraction=0.5, proj_width=128),
}
# DenoiserConfig::device(1)
DENOISER_DEVICE = dict(
    channels=1, width=16, modes=8, layers=4, pad_fraction=0.125, proj_width=32, embed_frequencies=6, embed_width=32
)
# DapsConfig::reduced()
DAPS_REDUCED = dict(
    annealing=20,
    ode_steps=1,
    langevin=5,
    sigma_max=10.0,
    sigma_min=0.01,
    rho=7.0,
    tau=0.005,
    lr=3e-3,
    lr_min_ratio=0.01,
    lr_cap=0.5,
    clamp=10.0,
)
# Prior normalisation of runs/prior-device (only shifts and scales; any
# values time the same).
A_NORM = (7.502, 4.5)
BATCH = 16
N = 32


def pad_len(pad_fraction, n):
    # Rust: (pad_fraction * n).round() (half away from zero), capped at n-1.
    return min(int(math.floor(pad_fraction * n + 0.5)), max(n - 1, 0))


def coordinate_channels(n, dtype=torch.float32):
    """[n, n, 2]: channel 0 x = j/(n-1), channel 1 y = i/(n-1)."""
    step = 1.0 / (max(n, 2) - 1)
    i = torch.arange(n, dtype=torch.float64).view(n, 1).expand(n, n)
    j = torch.arange(n, dtype=torch.float64).view(1, n).expand(n, n)
    return torch.stack([j * step, i * step], dim=-1).to(dtype)


# --------------------------------------------------------------------------
# Spectral convolution
# --------------------------------------------------------------------------


class DftBases:
    """cos/sin tables of spectral.rs `SpectralBases` for an h x w grid."""

    def __init__(self, h, w, m):
        tau = 2 * math.pi
        k2 = torch.arange(m, dtype=torch.float64)
        xs = torch.arange(w, dtype=torch.float64)
        r = torch.arange(2 * m)
        k1 = torch.where(r < m, r, r - 2 * m).remainder(h).to(torch.float64)
        ys = torch.arange(h, dtype=torch.float64)
        ph_w = tau * torch.remainder(xs.view(w, 1) * k2.view(1, m), w) / w  # [w, m]
        ph_h = tau * torch.remainder(ys.view(h, 1) * k1.view(1, 2 * m), h) / h  # [h, 2m]
        cw = torch.where((k2 == 0) | (2 * k2 == w), 1.0, 2.0).view(m, 1)
        scale = 1.0 / (h * w)
        f = lambda t: t.to(torch.float32).contiguous()
        self.fwd_w_cos, self.fwd_w_nsin = f(ph_w.cos()), f(-ph_w.sin())
        self.fwd_h_cos, self.fwd_h_nsin = f(ph_h.cos()), f(-ph_h.sin())
        self.inv_h_cos, self.inv_h_sin = f(ph_h.t().cos()), f(ph_h.t().sin())
        self.inv_w_cos = f(cw * scale * ph_w.t().cos())
        self.inv_w_nsin = f(-cw * scale * ph_w.t().sin())


class SpectralConv2d(nn.Module):
    """Weights [in, out, 2m, m] (real and imaginary), N(0, 1/(in+out))."""

    def __init__(self, cin, cout, modes):
        super().__init__()
        std = math.sqrt(1.0 / (cin + cout))
        self.modes = modes
        self.weight_re = nn.Parameter(torch.randn(cin, cout, 2 * modes, modes) * std)
        self.weight_im = nn.Parameter(torch.randn(cin, cout, 2 * modes, modes) * std)

    def forward_fft(self, x):
        """x: [b, c, H, W] channels-first -> [b, o, H, W] (rfft2/irfft2)."""
        b, c, h, w = x.shape
        m = self.modes
        o = self.weight_re.shape[1]
        wgt = torch.complex(self.weight_re, self.weight_im)
        ft = torch.fft.rfft2(x)
        out = torch.zeros(b, o, h, w // 2 + 1, dtype=ft.dtype)
        out[:, :, :m, :m] = torch.einsum("bixy,ioxy->boxy", ft[:, :, :m, :m], wgt[:, :, :m])
        out[:, :, h - m :, :m] = torch.einsum("bixy,ioxy->boxy", ft[:, :, h - m :, :m], wgt[:, :, m:])
        return torch.fft.irfft2(out, s=(h, w))

    def forward_dft(self, bases, x):
        """x: [b, H, W, c] channels-last -> [b, H, W, o] (spectral.rs forward_with)."""
        b, h, w, c = x.shape
        m = self.modes
        k1 = 2 * m
        o = self.weight_re.shape[1]
        xt = x.transpose(2, 3)  # [b, h, c, w]
        xr = (xt @ bases.fwd_w_cos).permute(0, 2, 3, 1)  # [b, c, m, h]
        xi = (xt @ bases.fwd_w_nsin).permute(0, 2, 3, 1)
        zr = xr @ bases.fwd_h_cos - xi @ bases.fwd_h_nsin  # [b, c, m, 2m]
        zi = xi @ bases.fwd_h_cos + xr @ bases.fwd_h_nsin
        modes_first = lambda t: t.permute(3, 2, 0, 1).reshape(k1 * m, b, c)
        z = torch.cat([modes_first(zr), modes_first(zi)], dim=2)  # [2m*m, b, 2c]
        wr = self.weight_re.permute(2, 3, 0, 1).reshape(k1 * m, c, o)
        wi = self.weight_im.permute(2, 3, 0, 1).reshape(k1 * m, c, o)
        w_big = torch.cat([torch.cat([wr, wi], 2), torch.cat([-wi, wr], 2)], 1)  # [2m*m, 2c, 2o]
        y = torch.bmm(z, w_big)  # [2m*m, b, 2o]
        back = lambda t: t.reshape(k1, m, b, o).permute(2, 3, 1, 0)  # [b, o, m, 2m]
        yr, yi = back(y[:, :, :o]), back(y[:, :, o:])
        vr = yr @ bases.inv_h_cos - yi @ bases.inv_h_sin  # [b, o, m, h]
        vi = yi @ bases.inv_h_cos + yr @ bases.inv_h_sin
        to_cols = lambda t: t.permute(0, 3, 1, 2)  # [b, h, o, m]
        out = to_cols(vr) @ bases.inv_w_cos + to_cols(vi) @ bases.inv_w_nsin  # [b, h, o, w]
        return out.transpose(2, 3)


class Pointwise(nn.Module):
    """Linear over the channel dim; channels-last uses nn.Linear, channels-first
    a 1x1 convolution with the same weights (the usual PyTorch FNO skip)."""

    def __init__(self, cin, cout):
        super().__init__()
        self.lin = nn.Linear(cin, cout)

    def forward(self, x, channels_first):
        if channels_first:
            return F.conv2d(x, self.lin.weight[:, :, None, None], self.lin.bias)
        return self.lin(x)


# --------------------------------------------------------------------------
# FNO surrogate (fno.rs)
# --------------------------------------------------------------------------


class Fno(nn.Module):
    def __init__(self, width, modes, layers, pad_fraction, proj_width, spectral="fft", norm=(0.0, 1.0, 0.0, 1.0)):
        super().__init__()
        self.modes, self.pad_fraction, self.spectral_kind = modes, pad_fraction, spectral
        self.norm = norm
        self.lift = nn.Linear(3, width)
        self.spectral = nn.ModuleList([SpectralConv2d(width, width, modes) for _ in range(layers)])
        self.skip = nn.ModuleList([Pointwise(width, width) for _ in range(layers)])
        self.proj_hidden = nn.Linear(width, proj_width)
        self.proj_out = nn.Linear(proj_width, 1)
        self._bases = {}
        self._coords = {}

    def bases(self, p):
        if p not in self._bases:
            self._bases[p] = DftBases(p, p, self.modes)
        return self._bases[p]

    def coords(self, n):
        if n not in self._coords:
            self._coords[n] = coordinate_channels(n).permute(2, 0, 1).unsqueeze(0)  # [1, 2, n, n]
        return self._coords[n]

    def forward(self, a):
        am, asd, um, usd = self.norm
        return self.forward_normalized((a - am) / asd) * usd + um

    def forward_normalized(self, a):
        b, n, _ = a.shape
        p = pad_len(self.pad_fraction, n)
        x = torch.cat([a.unsqueeze(1), self.coords(n).expand(b, 2, n, n)], dim=1)  # [b, 3, n, n]
        if p > 0:
            x = F.pad(x, (p, p, p, p), mode="reflect")  # numpy "reflect": edge not repeated
        h = self.lift(x.permute(0, 2, 3, 1))  # [b, P, P, width]
        if self.spectral_kind == "fft":
            h = h.permute(0, 3, 1, 2)  # channels-first for rfft2 over the last two dims
            for spec, skip in zip(self.spectral, self.skip):
                h = F.relu(spec.forward_fft(h) + skip(h, True))
            h = h[:, :, p : p + n, p : p + n].permute(0, 2, 3, 1)
        else:
            bases = self.bases(n + 2 * p)
            for spec, skip in zip(self.spectral, self.skip):
                h = F.relu(spec.forward_dft(bases, h) + skip(h, False))
            h = h[:, p : p + n, p : p + n, :]
        u = self.proj_out(F.relu(self.proj_hidden(h)))
        return u.reshape(b, n, n)


def param_count(module):
    return sum(t.numel() for t in module.parameters())


def rel_l2_loss(pred, target):
    b = pred.shape[0]
    diff = (pred - target).reshape(b, -1)
    t = target.reshape(b, -1)
    num = (diff.pow(2).sum(1) + 1e-12).sqrt()
    den = t.pow(2).sum(1).sqrt()
    return (num / den).mean()


# --------------------------------------------------------------------------
# Denoiser + EDM (denoiser.rs, edm.rs)
# --------------------------------------------------------------------------


class Denoiser(nn.Module):
    def __init__(self, channels, width, modes, layers, pad_fraction, proj_width, embed_frequencies, embed_width, spectral="fft"):
        super().__init__()
        self.channels, self.width, self.modes, self.pad_fraction = channels, width, modes, pad_fraction
        self.spectral_kind = spectral
        f, e = 2 * embed_frequencies, embed_width
        self.register_buffer("freqs", torch.tensor([float(2**k) for k in range(embed_frequencies)]).view(1, -1))
        self.lift = nn.Linear(channels + 2, width)
        self.spectral = nn.ModuleList([SpectralConv2d(width, width, modes) for _ in range(layers)])
        self.skip = nn.ModuleList([Pointwise(width, width) for _ in range(layers)])
        # FiLM layers start at zero in ddis; random here so a trained
        # checkpoint's arithmetic is timed (same shapes either way).
        self.film = nn.ModuleList([nn.Linear(e, 2 * width) for _ in range(layers)])
        self.embed_in = nn.Linear(f, e)
        self.embed_out = nn.Linear(e, e)
        self.proj_hidden = nn.Linear(width, proj_width)
        self.proj_out = nn.Linear(proj_width, channels)
        self._bases = {}
        self._coords = {}

    def embedding(self, c_noise):
        phase = c_noise.view(-1, 1) * self.freqs
        feats = torch.cat([phase.sin(), phase.cos()], dim=1)
        return F.relu(self.embed_out(F.relu(self.embed_in(feats))))

    def forward(self, x_in, c_noise):
        """x_in [b, C, n, n], c_noise [b] -> [b, C, n, n]."""
        b, c, n, _ = x_in.shape
        p = pad_len(self.pad_fraction, n)
        w = self.width
        emb = self.embedding(c_noise)
        if n not in self._coords:
            self._coords[n] = coordinate_channels(n).permute(2, 0, 1).unsqueeze(0)
        x = torch.cat([x_in, self._coords[n].expand(b, 2, n, n)], dim=1)
        if p > 0:
            x = F.pad(x, (p, p, p, p), mode="reflect")
        h = self.lift(x.permute(0, 2, 3, 1))  # [b, P, P, w]
        cf = self.spectral_kind == "fft"
        if cf:
            h = h.permute(0, 3, 1, 2)
        else:
            P = n + 2 * p
            if P not in self._bases:
                self._bases[P] = DftBases(P, P, self.modes)
            bases = self._bases[P]
        for spec, skip, film in zip(self.spectral, self.skip, self.film):
            ss = film(emb)
            if cf:
                scale = ss[:, :w].view(b, w, 1, 1) + 1.0
                shift = ss[:, w:].view(b, w, 1, 1)
                h = F.relu((spec.forward_fft(h) + skip(h, True)) * scale + shift)
            else:
                scale = ss[:, :w].view(b, 1, 1, w) + 1.0
                shift = ss[:, w:].view(b, 1, 1, w)
                h = F.relu((spec.forward_dft(bases, h) + skip(h, False)) * scale + shift)
        if cf:
            h = h[:, :, p : p + n, p : p + n].permute(0, 2, 3, 1)
        else:
            h = h[:, p : p + n, p : p + n, :]
        out = self.proj_out(F.relu(self.proj_hidden(h)))
        return out.permute(0, 3, 1, 2)


class EdmModel(nn.Module):
    def __init__(self, denoiser, sigma_data=1.0):
        super().__init__()
        self.denoiser, self.sigma_data = denoiser, sigma_data

    def denoise_at(self, x, sigma):
        b = x.shape[0]
        sd = self.sigma_data
        s = torch.full((b,), float(sigma))
        s4 = s.view(b, 1, 1, 1)
        s2_sd2 = s4.square() + sd * sd
        c_skip = (sd * sd) / s2_sd2
        c_in = s2_sd2.sqrt().reciprocal()
        c_out = s4 * c_in * sd
        c_noise = s.log() / 4.0
        net = self.denoiser(x * c_in, c_noise)
        return x * c_skip + net * c_out


# --------------------------------------------------------------------------
# Smooth noise (noise.rs) and DAPS (daps.rs, guide.rs)
# --------------------------------------------------------------------------


def sqrt_rbf_kernel(n, length_scale=0.05):
    h = 1.0 / (n - 1)
    idx = torch.arange(n, dtype=torch.float64)
    d = (idx.view(n, 1) - idx.view(1, n)) * h
    k1 = torch.exp(-d * d / (2 * length_scale**2))
    lam, u = torch.linalg.eigh(k1)
    return ((u * lam.clamp(min=0).sqrt()) @ u.t()).to(torch.float32)


class SmoothNoise:
    def __init__(self, n, length_scale=0.05):
        self.n = n
        self.L = sqrt_rbf_kernel(n, length_scale)

    def draw(self, gen, batch, channels):
        z = torch.randn(batch, channels, self.n, self.n, generator=gen)
        return self.L @ z @ self.L  # L symmetric: L Z L^T


def karras_sigmas(steps, sigma_min, sigma_max, rho):
    if steps <= 1:
        return [sigma_max] * steps
    hi, lo = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    out = []
    for i in range(steps):
        t = i / (steps - 1)
        out.append(sigma_max if i == 0 else sigma_min if i + 1 == steps else (hi + t * (lo - hi)) ** rho)
    return out


def step_size(cfg, i, sigma):
    t = i / (cfg["annealing"] - 1) if cfg["annealing"] > 1 else 0.0
    decayed = cfg["lr"] * (1.0 - t * (1.0 - cfg["lr_min_ratio"]))
    return min(decayed, cfg["lr_cap"] * sigma * sigma)


class SurrogateGuide:
    """L = 0.5 sum_k ((F(a)[node_k] - y_k) / y_scale)^2, gradient w.r.t. the
    normalised field by autograd through the FNO (guide.rs); y_scale is the
    readings' RMS floored at the surrogate's u_std."""

    def __init__(self, fno, nodes, values, a_norm, batch):
        self.fno, self.a_norm = fno, a_norm
        k = len(nodes)
        rms = math.sqrt(sum(v * v for v in values) / k)
        scale = max(rms if rms > 1e-12 else 1.0, fno.norm[3])
        self.idx = torch.tensor(nodes, dtype=torch.int64).repeat(batch, 1)
        self.y = torch.tensor(values, dtype=torch.float32).repeat(batch, 1)
        self.inv_scale = torch.full((batch, k), 1.0 / scale)

    def loss_grad(self, x0):
        b, _, n, _ = x0.shape
        x = x0.detach().requires_grad_(True)
        a = (x * self.a_norm[1] + self.a_norm[0]).reshape(b, n, n)
        u = self.fno(a).reshape(b, n * n)
        r = (u.gather(1, self.idx) - self.y) * self.inv_scale
        loss = 0.5 * r.square().sum(1)
        (g,) = torch.autograd.grad(loss.sum(), x)
        return loss.detach(), g


def daps_sample(edm, guide, noise, cfg, batch, channels, seed):
    gen = torch.Generator().manual_seed(seed)
    sigmas = karras_sigmas(cfg["annealing"], cfg["sigma_min"], cfg["sigma_max"], cfg["rho"])
    tau = cfg["tau"]  # noise floor 0 (noise-free readings)
    inv_tau2 = 1.0 / (tau * tau)
    clamped = 0
    calls = [0, 0]
    x = noise.draw(gen, batch, channels) * sigmas[0]
    for i, s in enumerate(sigmas):
        if cfg["ode_steps"] == 1:
            sub = [s]
        else:
            sub = karras_sigmas(cfg["ode_steps"], min(cfg["sigma_min"], s * 0.5), s, cfg["rho"])
        # heun_sample(x / s, sub): starts at sub[0] * (x / s) = x.
        with torch.no_grad():
            xa = x
            for k, sk in enumerate(sub):
                s_next = sub[k + 1] if k + 1 < len(sub) else 0.0
                dt = s_next - sk
                d = (xa - edm.denoise_at(xa, sk)) / sk
                calls[0] += 1
                euler = xa + d * dt
                if s_next > 0:
                    d_next = (euler - edm.denoise_at(euler, s_next)) / s_next
                    calls[0] += 1
                    xa = xa + (d + d_next) * (0.5 * dt)
                else:
                    xa = euler
        a0 = xa
        lr = step_size(cfg, i, s)
        a = a0
        for _ in range(cfg["langevin"]):
            _, grad = guide.loss_grad(a)
            calls[1] += 1
            with torch.no_grad():
                drift = grad * (-inv_tau2) - (a - a0) / (s * s)
                eps = noise.draw(gen, batch, channels)
                a = a + drift * lr + eps * math.sqrt(2 * lr)
                bad = (~torch.isfinite(a)) | (a.abs() > cfg["clamp"])
                clamped += int(bad.sum())
                a = torch.nan_to_num(a, nan=0.0).clamp(-cfg["clamp"], cfg["clamp"])
        s_next = sigmas[i + 1] if i + 1 < len(sigmas) else 0.0
        x = a + noise.draw(gen, batch, channels) * s_next if s_next > 0 else a
    return x, clamped, calls


# --------------------------------------------------------------------------
# Benchmarks
# --------------------------------------------------------------------------


def emit(**kw):
    print("RESULT " + json.dumps(kw), flush=True)


def bench_fno_step(name, spectral, repeats, steps, budget=float("inf")):
    cfg = FNO_CONFIGS[name]
    torch.manual_seed(0)
    model = Fno(**cfg, spectral=spectral)
    # burn's AdamConfig::new(): beta 0.9 / 0.999, epsilon 1e-5; lr 1e-3 as in fno_step.rs.
    optim = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-5)
    a = torch.rand(BATCH, N, N) + 1.0
    u = torch.rand(BATCH, N, N) + 1.0

    def step():
        optim.zero_grad(set_to_none=True)
        loss = rel_l2_loss(model(a), u)
        value = float(loss.detach())
        loss.backward()
        optim.step()
        return value

    start = time.perf_counter()
    loss = step()  # warm-up
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(steps):
            loss = step()
        rates.append(steps / (time.perf_counter() - t))
        if time.perf_counter() - start > budget:
            break  # a loaded or oversubscribed machine: fewer repeats
    return statistics.median(rates), rates, loss, param_count(model)


def read_obs(path, n):
    nodes, values = [], []
    with open(path) as f:
        header = f.readline().strip()
        assert header == "x,y,value", header
        for line in f:
            if not line.strip():
                continue
            x, y, v = (float(t) for t in line.split(","))
            snap = lambda t: min(int(math.floor(t * (n - 1) + 0.5)), n - 1)  # observe.rs `snap`
            nodes.append(snap(y) * n + snap(x))
            values.append(v)
    assert len(set(nodes)) == len(nodes), "sensors must sit on distinct nodes"
    return nodes, values


def random_obs(n, k, seed):
    g = torch.Generator().manual_seed(seed)
    nodes = torch.randperm(n * n, generator=g)[:k].tolist()
    values = (torch.rand(k, generator=g) * 0.1).tolist()
    return nodes, values


def bench_reconstruct(spectral, obs, repeats, samples=1, seed=0, budget=float("inf")):
    torch.manual_seed(1)
    fno = Fno(**FNO_CONFIGS["device"], spectral=spectral)
    fno.requires_grad_(False)  # guidance needs d/d(input) only
    den = Denoiser(**DENOISER_DEVICE, spectral=spectral)
    den.requires_grad_(False)
    edm = EdmModel(den)
    noise = SmoothNoise(N, 0.05)
    nodes, values = obs
    guide = SurrogateGuide(fno, nodes, values, A_NORM, samples)
    times = []
    start = time.perf_counter()
    for r in range(repeats + 1):  # first one is a warm-up, reported separately
        t = time.perf_counter()
        x, clamped, calls = daps_sample(edm, guide, noise, DAPS_REDUCED, samples, 1, seed + r)
        _ = (x * A_NORM[1] + A_NORM[0]).numpy()  # denormalise, as reconstruct_cases does
        times.append(time.perf_counter() - t)
        if r >= 1 and time.perf_counter() - start > budget:
            break  # a loaded or oversubscribed machine: fewer repeats
    return statistics.median(times[1:]), times, clamped, calls


@torch.no_grad()
def check_equivalence():
    """fft and dft spectral paths give the same network output."""
    torch.manual_seed(3)
    for name in ("device", "width32-modes12"):
        m_fft = Fno(**FNO_CONFIGS[name], spectral="fft")
        m_dft = Fno(**FNO_CONFIGS[name], spectral="dft")
        m_dft.load_state_dict(m_fft.state_dict())
        a = torch.rand(2, N, N) + 1.0
        y1, y2 = m_fft(a), m_dft(a)
        err = float((y1 - y2).abs().max() / y1.abs().max())
        assert err < 1e-4, f"{name}: fft vs dft rel. max diff {err}"
        print(f"check: FNO {name}: fft and dft agree (rel. max diff {err:.1e}), {param_count(m_fft)} params")
    d1 = Denoiser(**DENOISER_DEVICE, spectral="fft")
    d2 = Denoiser(**DENOISER_DEVICE, spectral="dft")
    d2.load_state_dict(d1.state_dict())
    x = torch.randn(2, 1, N, N)
    c = torch.tensor([0.1, -0.3])
    y1, y2 = d1(x, c), d2(x, c)
    err = float((y1 - y2).abs().max() / y1.abs().max())
    assert err < 1e-4, f"denoiser: fft vs dft rel. max diff {err}"
    print(f"check: denoiser device: fft and dft agree (rel. max diff {err:.1e}), {param_count(d1)} params")
    # Parameter counts of the Rust presets (fno.rs / denoiser.rs tests).
    assert param_count(Fno(**FNO_CONFIGS["device"])) == 264_449
    assert param_count(Fno(**FNO_CONFIGS["host"])) == 2_368_001
    assert param_count(Denoiser(**DENOISER_DEVICE)) == 269_569
    # Smooth noise has unit pointwise variance.
    L = sqrt_rbf_kernel(N)
    var = float((L @ L).diagonal().mean())
    assert abs(var - 1.0) < 1e-3, var
    print("check: parameter counts match the Rust presets; smooth noise variance 1")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--spectral", default="fft,dft", help="comma-separated: fft, dft")
    ap.add_argument("--fno-configs", default="device,width32-modes12")
    ap.add_argument("--fno-repeats", type=int, default=5)
    ap.add_argument("--fno-steps", type=int, default=3)
    ap.add_argument("--rec-repeats", type=int, default=5)
    ap.add_argument("--budget", type=float, default=60.0,
                    help="seconds per timed item after which no further repeat starts (at least one runs)")
    ap.add_argument("--obs", help="x,y,value CSV (32x32 grid nodes); default: 31 random sensors")
    ap.add_argument("--seed", type=int, default=0, help="seed of the reconstruction's noise")
    ap.add_argument("--skip-fno", action="store_true")
    ap.add_argument("--skip-rec", action="store_true")
    ap.add_argument("--check", action="store_true", help="only run the equivalence checks")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    if args.check:
        check_equivalence()
        return
    print(
        f"torch {torch.__version__}, intra-op threads {torch.get_num_threads()}, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, MKL_NUM_THREADS={os.environ.get('MKL_NUM_THREADS')}, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}",
        file=sys.stderr,
    )
    kinds = [s for s in args.spectral.split(",") if s]
    if not args.skip_fno:
        for name in [c for c in args.fno_configs.split(",") if c]:
            for sp in kinds:
                rate, rates, loss, params = bench_fno_step(name, sp, args.fno_repeats, args.fno_steps, args.budget)
                emit(kind="fno_step", config=name, spectral=sp, threads=args.threads, steps_per_s=rate,
                     all=rates, loss=loss, params=params)
                print(f"  fno_step {name:<16} {sp}: {rate:8.2f} steps/s (median of {len(rates)} x "
                      f"{args.fno_steps}; all {', '.join(f'{r:.2f}' for r in rates)})", file=sys.stderr)
    if not args.skip_rec:
        obs = read_obs(args.obs, N) if args.obs else random_obs(N, 31, 0)
        for sp in kinds:
            sec, times, clamped, calls = bench_reconstruct(sp, obs, args.rec_repeats, seed=args.seed, budget=args.budget)
            emit(kind="reconstruct", spectral=sp, threads=args.threads, seconds=sec, cold=times[0],
                 all=times[1:], clamped=clamped, denoiser_calls=calls[0], guide_calls=calls[1])
            print(f"  reconstruct {sp}: {sec:.3f} s (median of {len(times) - 1}, first/cold {times[0]:.3f} s; "
                  f"{calls[0]} denoiser calls, {calls[1]} guide calls, {clamped} clamped)", file=sys.stderr)


if __name__ == "__main__":
    main()
