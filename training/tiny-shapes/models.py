"""Small SD-style networks: AutoencoderKL-like VAE (factor 8, 4 latent channels), CLIP-like text encoder, conditional UNet."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def gn(c):
    return nn.GroupNorm(min(8, c // 4) if c < 32 else 8, c, eps=1e-5)


class ResBlock(nn.Module):
    def __init__(self, cin, cout, temb=None):
        super().__init__()
        self.norm1, self.conv1 = gn(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.temb = nn.Linear(temb, cout) if temb else None
        self.norm2, self.conv2 = gn(cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, t=None):
        h = self.conv1(F.silu(self.norm1(x)))
        if self.temb is not None:
            h = h + self.temb(F.silu(t))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


# ---------------------------------------------------------------- VAE

class Encoder(nn.Module):
    def __init__(self, ch=(16, 32, 64, 64), z=4):
        super().__init__()
        self.conv_in = nn.Conv2d(3, ch[0], 3, padding=1)
        layers = []
        for i, c in enumerate(ch):
            cin = ch[i - 1] if i else ch[0]
            if i:
                layers.append(nn.Conv2d(cin, c, 3, stride=2, padding=1))
            layers.append(ResBlock(c, c))
        layers.append(ResBlock(ch[-1], ch[-1]))
        self.blocks = nn.ModuleList(layers)
        self.norm_out = gn(ch[-1])
        self.conv_out = nn.Conv2d(ch[-1], 2 * z, 3, padding=1)
        self.quant_conv = nn.Conv2d(2 * z, 2 * z, 1)

    def forward(self, x):
        h = self.conv_in(x)
        for b in self.blocks:
            h = b(h)
        return self.quant_conv(self.conv_out(F.silu(self.norm_out(h))))  # mean ‖ logvar


class Upsample(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Decoder(nn.Module):
    def __init__(self, ch=(16, 32, 64, 64), z=4):
        super().__init__()
        self.post_quant_conv = nn.Conv2d(z, z, 1)
        self.conv_in = nn.Conv2d(z, ch[-1], 3, padding=1)
        layers = [ResBlock(ch[-1], ch[-1]), ResBlock(ch[-1], ch[-1])]
        rev = list(reversed(ch))
        for i in range(1, len(rev)):
            layers.append(Upsample(rev[i - 1], rev[i]))
            layers.append(ResBlock(rev[i], rev[i]))
        self.blocks = nn.ModuleList(layers)
        self.norm_out = gn(ch[0])
        self.conv_out = nn.Conv2d(ch[0], 3, 3, padding=1)

    def forward(self, z):
        h = self.conv_in(self.post_quant_conv(z))
        for b in self.blocks:
            h = b(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class VAE(nn.Module):
    def __init__(self, ch=(16, 32, 64, 64)):
        super().__init__()
        self.encoder, self.decoder = Encoder(ch), Decoder(ch)

    def forward(self, x, sample=True):
        moments = self.encoder(x)
        mean, logvar = moments.chunk(2, dim=1)
        logvar = logvar.clamp(-30, 20)
        z = mean + torch.randn_like(mean) * torch.exp(0.5 * logvar) if sample else mean
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).sum(dim=(1, 2, 3)).mean()
        return self.decoder(z), kl, mean


class VaeEncoderExport(nn.Module):
    """sample [-1,1] -> latent_sample (the distribution's mean, unscaled)."""
    def __init__(self, enc):
        super().__init__()
        self.enc = enc

    def forward(self, sample):
        return self.enc(sample)[:, :4]


# ---------------------------------------------------------------- text encoder

class Attention(nn.Module):
    def __init__(self, dim, heads, context_dim=None):
        super().__init__()
        self.heads = heads
        context_dim = context_dim or dim
        self.q = nn.Linear(dim, dim, bias=False)
        self.k = nn.Linear(context_dim, dim, bias=False)
        self.v = nn.Linear(context_dim, dim, bias=False)
        self.out = nn.Linear(dim, dim)

    def forward(self, x, context=None, mask=None):
        context = x if context is None else context
        b, n, d = x.shape
        h = self.heads
        q = self.q(x).reshape(b, n, h, d // h).transpose(1, 2)
        k = self.k(context).reshape(b, context.shape[1], h, d // h).transpose(1, 2)
        v = self.v(context).reshape(b, context.shape[1], h, d // h).transpose(1, 2)
        w = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(d // h))
        if mask is not None:
            w = w + mask
        o = torch.matmul(w.softmax(dim=-1), v).transpose(1, 2).reshape(b, n, d)
        return self.out(o)


class TextLayer(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.ln1, self.attn = nn.LayerNorm(dim), Attention(dim, heads)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x, mask):
        x = x + self.attn(self.ln1(x), mask=mask)
        return x + self.mlp(self.ln2(x))


class TextEncoder(nn.Module):
    def __init__(self, vocab, dim=96, layers=3, heads=4, length=77):
        super().__init__()
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.randn(length, dim) * 0.01)
        nn.init.normal_(self.tok.weight, std=0.02)
        self.layers = nn.ModuleList(TextLayer(dim, heads) for _ in range(layers))
        self.ln_final = nn.LayerNorm(dim)
        self.register_buffer("mask", torch.full((length, length), float("-inf")).triu(1), persistent=False)

    def forward(self, input_ids):
        x = self.tok(input_ids.long()) + self.pos[None]
        for layer in self.layers:
            x = layer(x, self.mask)
        return self.ln_final(x)


# ---------------------------------------------------------------- UNet

def timestep_embedding(t, dim):
    """Sinusoidal embedding, cos first (diffusers' flip_sin_to_cos=True, freq_shift=0)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


class Transformer(nn.Module):
    """GroupNorm, 1x1 in, [self-attn, cross-attn, feed-forward] with pre-LayerNorm, 1x1 out, residual."""
    def __init__(self, c, context_dim, head_dim=32):
        super().__init__()
        heads = c // head_dim
        self.norm = gn(c)
        self.proj_in = nn.Conv2d(c, c, 1)
        self.ln1, self.attn1 = nn.LayerNorm(c), Attention(c, heads)
        self.ln2, self.attn2 = nn.LayerNorm(c), Attention(c, heads, context_dim)
        self.ln3 = nn.LayerNorm(c)
        self.ff = nn.Sequential(nn.Linear(c, 4 * c), nn.GELU(), nn.Linear(4 * c, c))
        self.proj_out = nn.Conv2d(c, c, 1)

    def forward(self, x, context):
        b, c, hh, ww = x.shape
        h = self.proj_in(self.norm(x))
        h = h.flatten(2).transpose(1, 2)
        h = h + self.attn1(self.ln1(h))
        h = h + self.attn2(self.ln2(h), context)
        h = h + self.ff(self.ln3(h))
        h = h.transpose(1, 2).reshape(b, c, hh, ww)
        return x + self.proj_out(h)


def coordinates(x):
    """Two channels with the normalised pixel-centre coordinates (x then y, each in (-1, 1)) of x's height and width."""
    b, _, h, w = x.shape
    ys = (torch.arange(h, dtype=x.dtype) + 0.5) * (2.0 / h) - 1.0
    xs = (torch.arange(w, dtype=x.dtype) + 0.5) * (2.0 / w) - 1.0
    grid = torch.stack([xs[None, :].expand(h, w), ys[:, None].expand(h, w)])
    return grid[None].expand(b, 2, h, w)


def zero_(module):
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class UNet(nn.Module):
    """coords: conv_in also sees two coordinate channels, so "top left" etc. can be tied to absolute positions (the
    convolutions alone only see position through their zero padding). zero_init: residual branches (ResBlock conv2,
    transformer proj_out) and conv_out start at zero, as in the ADM/SD UNets, so every block starts as the identity."""
    def __init__(self, ch=(64, 128), context_dim=96, temb_in=64, coords=False, zero_init=False):
        super().__init__()
        c0, c1 = ch
        td = 4 * c0
        self.temb_in = temb_in
        self.coords = coords
        self.time = nn.Sequential(nn.Linear(temb_in, td), nn.SiLU(), nn.Linear(td, td))
        self.conv_in = nn.Conv2d(6 if coords else 4, c0, 3, padding=1)
        self.down0_res, self.down0_attn = ResBlock(c0, c0, td), Transformer(c0, context_dim)
        self.down0_sample = nn.Conv2d(c0, c0, 3, stride=2, padding=1)
        self.down1_res, self.down1_attn = ResBlock(c0, c1, td), Transformer(c1, context_dim)
        self.mid_res1, self.mid_attn, self.mid_res2 = ResBlock(c1, c1, td), Transformer(c1, context_dim), ResBlock(c1, c1, td)
        # up level 1 (4x4): skips down1_res (c1), down0_sample (c0)
        self.up1_res = nn.ModuleList([ResBlock(c1 + c1, c1, td), ResBlock(c1 + c0, c1, td)])
        self.up1_attn = nn.ModuleList([Transformer(c1, context_dim), Transformer(c1, context_dim)])
        self.up1_sample = Upsample(c1, c1)
        # up level 0 (8x8): skips down0_res (c0), conv_in (c0)
        self.up0_res = nn.ModuleList([ResBlock(c1 + c0, c0, td), ResBlock(c0 + c0, c0, td)])
        self.up0_attn = nn.ModuleList([Transformer(c0, context_dim), Transformer(c0, context_dim)])
        self.norm_out = gn(c0)
        self.conv_out = nn.Conv2d(c0, 4, 3, padding=1)
        if zero_init:
            for m in self.modules():
                if isinstance(m, ResBlock):
                    zero_(m.conv2)
                elif isinstance(m, Transformer):
                    zero_(m.proj_out)
            zero_(self.conv_out)

    def down_and_mid(self, sample, timestep, encoder_hidden_states, conditioning=None):
        """The encoder half: (time embedding, the 4 skip activations in diffusers' down_block_res_samples order, the mid
        block's output). conditioning (a ControlNet's embedded control image) is added after conv_in."""
        ctx = encoder_hidden_states
        t = self.time(timestep_embedding(timestep, self.temb_in))
        h = self.conv_in(torch.cat([sample, coordinates(sample)], dim=1) if self.coords else sample)
        if conditioning is not None:
            h = h + conditioning
        skips = [h]
        h = self.down0_attn(self.down0_res(h, t), ctx)
        skips.append(h)
        h = self.down0_sample(h)
        skips.append(h)
        h = self.down1_attn(self.down1_res(h, t), ctx)
        skips.append(h)
        h = self.mid_res2(self.mid_attn(self.mid_res1(h, t), ctx), t)
        return t, skips, h

    def forward(self, sample, timestep, encoder_hidden_states, down_residuals=None, mid_residual=None):
        """down_residuals / mid_residual: a ControlNet's outputs, added to the skips and the mid block's output as
        diffusers' UNet2DConditionModel adds down_block_additional_residuals / mid_block_additional_residual."""
        ctx = encoder_hidden_states
        t, skips, h = self.down_and_mid(sample, timestep, encoder_hidden_states)
        if down_residuals is not None:
            skips = [s + r for s, r in zip(skips, down_residuals)]
        if mid_residual is not None:
            h = h + mid_residual
        for res, attn in zip(self.up1_res, self.up1_attn):
            h = attn(res(torch.cat([h, skips.pop()], dim=1), t), ctx)
        h = self.up1_sample(h)
        for res, attn in zip(self.up0_res, self.up0_attn):
            h = attn(res(torch.cat([h, skips.pop()], dim=1), t), ctx)
        return self.conv_out(F.silu(self.norm_out(h)))
