"""Tiny Stable Cascade-style networks (PyTorch), module for module after diffusers' StableCascadeUNet and PaellaVQModel.

- PaellaVQ: Stage A autoencoder (pixel-unshuffle x2, MixingResidualBlocks, one x2 level: 64x64x3 -> 16x16x4).
  The vector quantizer is not used (trained as a plain autoencoder; Stable Cascade decodes unquantized latents too).
- EffNetCompressor: the semantic compressor, image 64x64 -> 16 x 2 x 2, standardized per sample.
- StableCascadeUNet: Stage B (decoder, effnet mapper) and Stage C (prior, clip_text / clip_img mappers).
- ClipText: CLIP text model with projection (causal, final LayerNorm, pooled = state at argmax(input_ids)).
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


# ---------------------------------------------------------------- shared pieces

class PlainLayerNorm(nn.Module):
    """nn.LayerNorm(c, elementwise_affine=False, eps=1e-6) over the last axis. The unit weight / zero bias are fixed
    buffers because torch 1.13's ONNX exporter writes an invalid LayerNormalization (empty scale) without them."""

    def __init__(self, c, eps=1e-6):
        super().__init__()
        self.c, self.eps = c, eps
        self.register_buffer("one", torch.ones(c), persistent=False)
        self.register_buffer("zero", torch.zeros(c), persistent=False)

    def forward(self, x):
        return F.layer_norm(x, (self.c,), self.one, self.zero, self.eps)


class ChannelNorm(PlainLayerNorm):
    """SDCascadeLayerNorm: LayerNorm over the channels of an NCHW map, no affine, eps 1e-6."""

    def forward(self, x):
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class GlobalResponseNorm(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, 1, dim))
        self.beta = nn.Parameter(torch.zeros(1, 1, 1, dim))

    def forward(self, x):  # channels-last
        # the L2 norm over H, W (diffusers: torch.norm); vector_norm's gradient is 0 where a channel is all zero
        # (sqrt(sum x^2) would give NaN there: GELU underflows to exact zeros on the prior's 2x2 maps)
        agg = torch.linalg.vector_norm(x, 2, dim=(1, 2), keepdim=True)
        stand = agg / (agg.mean(dim=-1, keepdim=True) + 1e-6)
        return self.gamma * (x * stand) + self.beta + x


class Attention(nn.Module):
    """diffusers Attention(query_dim=c, heads, dim_head=c // heads, bias=True) with to_q/to_k/to_v/to_out.0."""

    def __init__(self, c, heads):
        super().__init__()
        self.heads = heads
        self.to_q, self.to_k, self.to_v = nn.Linear(c, c), nn.Linear(c, c), nn.Linear(c, c)
        self.to_out = nn.ModuleList([nn.Linear(c, c)])

    def forward(self, x, kv, mask=None):
        b, n, c = x.shape
        h = self.heads
        q = self.to_q(x).view(b, n, h, c // h).transpose(1, 2)
        k = self.to_k(kv).view(b, kv.shape[1], h, c // h).transpose(1, 2)
        v = self.to_v(kv).view(b, kv.shape[1], h, c // h).transpose(1, 2)
        w = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(c // h))
        if mask is not None:
            w = w + mask
        o = (w.softmax(-1) @ v).transpose(1, 2).reshape(b, n, c)
        return self.to_out[0](o)


# ---------------------------------------------------------------- Stage A (Paella VQGAN, no quantizer)

class MixingResidualBlock(nn.Module):
    def __init__(self, c, hidden):
        super().__init__()
        self.norm1 = PlainLayerNorm(c)
        self.depthwise = nn.Sequential(nn.ReplicationPad2d(1), nn.Conv2d(c, c, 3, groups=c))
        self.norm2 = PlainLayerNorm(c)
        self.channelwise = nn.Sequential(nn.Linear(c, hidden), nn.GELU(), nn.Linear(hidden, c))
        # diffusers starts all six at 0 (identity block); the residual scales start at 0.1 here so a short run gets going
        self.gammas = nn.Parameter(torch.tensor([0.0, 0.0, 0.1, 0.0, 0.0, 0.1]))

    def forward(self, x):
        m = self.gammas
        t = self.norm1(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2) * (1 + m[0]) + m[1]
        x = x + self.depthwise(t) * m[2]
        t = self.norm2(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2) * (1 + m[3]) + m[4]
        return x + self.channelwise(t.permute(0, 2, 3, 1)).permute(0, 3, 1, 2) * m[5]


class PaellaEncoder(nn.Module):
    def __init__(self, levels=(32, 64), latent=4, f=2):
        super().__init__()
        self.in_block = nn.Sequential(nn.PixelUnshuffle(f), nn.Conv2d(3 * f * f, levels[0], 1))
        blocks = []
        for i, c in enumerate(levels):
            if i:
                blocks.append(nn.Conv2d(levels[i - 1], c, 4, stride=2, padding=1))
            blocks.append(MixingResidualBlock(c, 4 * c))
        blocks.append(nn.Conv2d(levels[-1], latent, 1))  # Paella: conv (no bias) + BatchNorm; here a biased conv, centred after training
        self.down_blocks = nn.Sequential(*blocks)

    def forward(self, x):  # x in [0, 1]
        return self.down_blocks(self.in_block(x))


class PaellaDecoder(nn.Module):
    """decode(latents, force_not_quantize=True): up_blocks (1x1 conv, bottleneck blocks, ConvTranspose, blocks), out_block."""

    def __init__(self, levels=(32, 64), latent=4, bottleneck=6, f=2):
        super().__init__()
        n = len(levels)
        blocks = [nn.Sequential(nn.Conv2d(latent, levels[-1], 1))]
        for i in range(n):
            c = levels[n - 1 - i]
            for _ in range(bottleneck if i == 0 else 1):
                blocks.append(MixingResidualBlock(c, 4 * c))
            if i < n - 1:
                blocks.append(nn.ConvTranspose2d(c, levels[n - 2 - i], 4, stride=2, padding=1))
        self.up_blocks = nn.Sequential(*blocks)
        self.out_block = nn.Sequential(nn.Conv2d(levels[0], 3 * f * f, 1), nn.PixelShuffle(f))

    def forward(self, latent_sample):
        return self.out_block(self.up_blocks(latent_sample))


class PaellaVQ(nn.Module):
    def __init__(self, levels=(32, 64), latent=4, bottleneck=6):
        super().__init__()
        self.encoder = PaellaEncoder(levels, latent)
        self.decoder = PaellaDecoder(levels, latent, bottleneck)


# ---------------------------------------------------------------- semantic compressor ("EfficientNet")

class EffNetCompressor(nn.Module):
    """A small strided conv stack standing in for EfficientNetV2-S features + 1x1 mapper: 64x64x3 -> 16 x 2 x 2.
    Output standardized per sample (zero mean, unit variance over its C*H*W values): unit-variance latents for Stage C."""

    def __init__(self, out=16, widths=(32, 48, 64, 64, 64)):
        super().__init__()
        layers, c = [], 3
        for w in widths:  # 64 -> 32 -> 16 -> 8 -> 4 -> 2
            layers += [nn.Conv2d(c, w, 3, stride=2, padding=1), nn.GroupNorm(8, w), nn.GELU()]
            c = w
        self.features = nn.Sequential(*layers)
        self.mapper = nn.Conv2d(c, out, 1)

    def forward(self, x):  # x in [0, 1]
        e = self.mapper(self.features(x * 2 - 1))
        return F.layer_norm(e, e.shape[1:], eps=1e-5)


# ---------------------------------------------------------------- text encoder (CLIPTextModelWithProjection)

class ClipLayer(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.layer_norm1, self.layer_norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.self_attn = Attention(d, heads)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x, mask):
        h = self.layer_norm1(x)
        x = x + self.self_attn(h, h, mask)
        return x + self.mlp(self.layer_norm2(x))


class ClipText(nn.Module):
    def __init__(self, vocab, d=64, layers=2, heads=2, proj=64, length=77):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab, d)
        self.position_embedding = nn.Parameter(torch.randn(length, d) * 0.01)
        self.layers = nn.ModuleList([ClipLayer(d, heads) for _ in range(layers)])
        self.final_layer_norm = nn.LayerNorm(d)
        self.text_projection = nn.Linear(d, proj, bias=False)
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        self.register_buffer("causal", torch.full((length, length), -1e9).triu(1), persistent=False)

    def forward(self, input_ids):
        """input_ids [B, 77] -> text_embeds [B, P], last_hidden_state [B, 77, W], hidden (last layer before final LN)."""
        n = input_ids.shape[1]
        x = self.token_embedding(input_ids.long()) + self.position_embedding[:n]
        mask = self.causal[:n, :n]
        for layer in self.layers:
            x = layer(x, mask)
        last = self.final_layer_norm(x)
        eos = input_ids.to(torch.float32).argmax(dim=-1)  # CLIP: the (first) EOS, the largest id
        pooled = last[torch.arange(last.shape[0]), eos]
        return self.text_projection(pooled), last, x


# ---------------------------------------------------------------- StableCascadeUNet

def timestep_ratio_embedding(r, dim, max_positions=10000):
    r = r * max_positions
    half = dim // 2
    emb = math.log(max_positions) / (half - 1)
    emb = torch.arange(half, dtype=torch.float32).mul(-emb).exp()
    emb = r[:, None] * emb[None, :]
    return torch.cat([emb.sin(), emb.cos()], dim=1)


class ResBlock(nn.Module):
    def __init__(self, c, c_skip=0, k=3):
        super().__init__()
        self.depthwise = nn.Conv2d(c, c, k, padding=k // 2, groups=c)
        self.norm = ChannelNorm(c)
        self.channelwise = nn.Sequential(nn.Linear(c + c_skip, 4 * c), nn.GELU(), GlobalResponseNorm(4 * c),
                                         nn.Dropout(0.0), nn.Linear(4 * c, c))

    def forward(self, x, skip=None):
        h = self.norm(self.depthwise(x))
        if skip is not None:
            h = torch.cat([h, skip], dim=1)
        return self.channelwise(h.permute(0, 2, 3, 1)).permute(0, 3, 1, 2) + x


class TimestepBlock(nn.Module):
    def __init__(self, c, c_t, conds):
        super().__init__()
        self.mapper = nn.Linear(c_t, 2 * c)
        self.conds = list(conds)
        for name in self.conds:
            setattr(self, f"mapper_{name}", nn.Linear(c_t, 2 * c))

    def forward(self, x, t):
        t = t.chunk(len(self.conds) + 1, dim=1)
        a, b = self.mapper(t[0]).chunk(2, dim=1)
        for i, name in enumerate(self.conds):
            ac, bc = getattr(self, f"mapper_{name}")(t[i + 1]).chunk(2, dim=1)
            a, b = a + ac, b + bc
        return x * (1 + a[:, :, None, None]) + b[:, :, None, None]


class AttnBlock(nn.Module):
    def __init__(self, c, c_cond, heads, self_attn=True):
        super().__init__()
        self.self_attn = self_attn
        self.norm = ChannelNorm(c)
        self.attention = Attention(c, heads)
        self.kv_mapper = nn.Sequential(nn.SiLU(), nn.Linear(c_cond, c))

    def forward(self, x, kv):
        kv = self.kv_mapper(kv)
        nx = self.norm(x)
        b, c, h, w = x.shape
        tokens = nx.view(b, c, h * w).transpose(1, 2)
        if self.self_attn:
            kv = torch.cat([tokens, kv], dim=1)
        return x + self.attention(tokens, kv).transpose(1, 2).reshape(b, c, h, w)


class UpDownBlock2d(nn.Module):
    def __init__(self, cin, cout, mode, enabled):
        super().__init__()
        interp = nn.Upsample(scale_factor=2.0 if mode == "up" else 0.5, mode="bilinear", align_corners=True) if enabled else nn.Identity()
        mapping = nn.Conv2d(cin, cout, 1)
        self.blocks = nn.ModuleList([interp, mapping] if mode == "up" else [mapping, interp])

    def forward(self, x):
        for b in self.blocks:
            x = b(x)
        return x


class StableCascadeUNet(nn.Module):
    """cfg keys as diffusers' config.json: in_channels, out_channels, patch_size, conditioning_dim, block_out_channels,
    num_attention_heads, down_num_layers_per_block, up_num_layers_per_block, block_types_per_layer,
    clip_text_pooled_in_channels, clip_text_in_channels, clip_image_in_channels, clip_seq, effnet_in_channels,
    timestep_conditioning_type, switch_level, timestep_ratio_embedding_dim, kernel_size, self_attn.
    Repeat mappers are 1 everywhere; no pixels mapper."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        c, p = cfg["block_out_channels"], cfg["patch_size"]
        cc, ct = cfg["conditioning_dim"], cfg["timestep_ratio_embedding_dim"]
        n = len(c)
        self.clip_txt_pooled_mapper = nn.Linear(cfg["clip_text_pooled_in_channels"], cc * cfg["clip_seq"])
        if cfg.get("clip_text_in_channels"):
            self.clip_txt_mapper = nn.Linear(cfg["clip_text_in_channels"], cc)
            self.clip_img_mapper = nn.Linear(cfg["clip_image_in_channels"], cc * cfg["clip_seq"])
        self.clip_norm = PlainLayerNorm(cc)
        if cfg.get("effnet_in_channels"):
            e = cfg["effnet_in_channels"]
            self.effnet_mapper = nn.Sequential(nn.Conv2d(e, 4 * c[0], 1), nn.GELU(), nn.Conv2d(4 * c[0], c[0], 1), ChannelNorm(c[0]))
        self.embedding = nn.Sequential(nn.PixelUnshuffle(p) if p > 1 else nn.Identity(), nn.Conv2d(cfg["in_channels"] * p * p, c[0], 1), ChannelNorm(c[0]))

        def block(kind, ch, level, c_skip=0):
            if kind == "SDCascadeResBlock":
                return ResBlock(ch, c_skip, cfg["kernel_size"])
            if kind == "SDCascadeAttnBlock":
                return AttnBlock(ch, cc, cfg["num_attention_heads"][level], cfg["self_attn"])
            return TimestepBlock(ch, ct, cfg["timestep_conditioning_type"])

        sw = cfg.get("switch_level")
        self.down_downscalers, self.down_blocks = nn.ModuleList(), nn.ModuleList()
        for i in range(n):
            if i == 0:
                self.down_downscalers.append(nn.Identity())
            elif sw is None:
                self.down_downscalers.append(nn.Sequential(ChannelNorm(c[i - 1]), nn.Conv2d(c[i - 1], c[i], 2, stride=2)))
            else:
                self.down_downscalers.append(nn.Sequential(ChannelNorm(c[i - 1]), UpDownBlock2d(c[i - 1], c[i], "down", sw[i - 1])))
            types = cfg["block_types_per_layer"][i]
            self.down_blocks.append(nn.ModuleList([block(t, c[i], i) for _ in range(cfg["down_num_layers_per_block"][i]) for t in types]))
        self.up_upscalers, self.up_blocks = nn.ModuleList(), nn.ModuleList()
        for i in reversed(range(n)):
            if i == 0:
                self.up_upscalers.append(nn.Identity())
            elif sw is None:
                self.up_upscalers.append(nn.Sequential(ChannelNorm(c[i]), nn.ConvTranspose2d(c[i], c[i - 1], 2, stride=2)))
            else:
                self.up_upscalers.append(nn.Sequential(ChannelNorm(c[i]), UpDownBlock2d(c[i], c[i - 1], "up", sw[i - 1])))
            types = cfg["block_types_per_layer"][i]
            layers = cfg["up_num_layers_per_block"][n - 1 - i]
            blocks, k = nn.ModuleList(), 0
            for _ in range(layers):
                for t in types:
                    blocks.append(block(t, c[i], i, c[i] if (k == 0 and i < n - 1 and t == "SDCascadeResBlock") else 0))
                    k += 1
            self.up_blocks.append(blocks)
        self.clf = nn.Sequential(ChannelNorm(c[0]), nn.Conv2d(c[0], cfg["out_channels"] * p * p, 1),
                                 nn.PixelShuffle(p) if p > 1 else nn.Identity())
        self._init()

    def _init(self):
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.normal_(self.clip_txt_pooled_mapper.weight, std=0.02)
        if hasattr(self, "clip_txt_mapper"):
            nn.init.normal_(self.clip_txt_mapper.weight, std=0.02)
            nn.init.normal_(self.clip_img_mapper.weight, std=0.02)
        nn.init.constant_(self.clf[1].weight, 0)
        depth = sum(self.cfg["down_num_layers_per_block"])
        for blocks in list(self.down_blocks) + list(self.up_blocks):
            for b in blocks:
                if isinstance(b, ResBlock):
                    b.channelwise[-1].weight.data *= math.sqrt(1 / depth)
                elif isinstance(b, TimestepBlock):
                    nn.init.constant_(b.mapper.weight, 0)

    def clip_embeddings(self, pooled, text=None, img=None):
        b = pooled.shape[0]
        tokens = self.clip_txt_pooled_mapper(pooled).view(b, pooled.shape[1] * self.cfg["clip_seq"], -1)
        if text is not None:
            t = self.clip_txt_mapper(text)
            i = self.clip_img_mapper(img).view(b, img.shape[1] * self.cfg["clip_seq"], -1)
            tokens = torch.cat([t, tokens, i], dim=1)
        return self.clip_norm(tokens)

    def _run(self, blocks, x, r, clip, skip=None):
        for k, b in enumerate(blocks):
            if isinstance(b, ResBlock):
                s = skip if k == 0 else None
                if s is not None and x.shape[-2:] != s.shape[-2:]:
                    x = F.interpolate(x, s.shape[-2:], mode="bilinear", align_corners=True)
                x = b(x, s)
            elif isinstance(b, AttnBlock):
                x = b(x, clip)
            else:
                x = b(x, r)
        return x

    def forward(self, sample, timestep_ratio, clip_text_pooled, clip_text=None, clip_img=None, effnet=None):
        ct = self.cfg["timestep_ratio_embedding_dim"]
        r = timestep_ratio_embedding(timestep_ratio, ct)
        for _ in self.cfg["timestep_conditioning_type"]:  # sca / crp: unset, so the embedding of 0
            r = torch.cat([r, timestep_ratio_embedding(timestep_ratio * 0, ct)], dim=1)
        clip = self.clip_embeddings(clip_text_pooled, clip_text, clip_img)
        x = self.embedding(sample)
        if effnet is not None:
            x = x + self.effnet_mapper(F.interpolate(effnet, size=x.shape[-2:], mode="bilinear", align_corners=True))
        levels = []
        for down, blocks in zip(self.down_downscalers, self.down_blocks):
            x = self._run(blocks, down(x), r, clip)
            levels.insert(0, x)
        x = levels[0]
        for i, (blocks, up) in enumerate(zip(self.up_blocks, self.up_upscalers)):
            x = up(self._run(blocks, x, r, clip, levels[i] if i > 0 else None))
        return self.clf(x)


def decoder_config(pooled=64):
    return {
        "_class_name": "StableCascadeUNet", "in_channels": 4, "out_channels": 4, "patch_size": 2, "conditioning_dim": 64,
        "block_out_channels": [64, 128], "num_attention_heads": [0, 4], "down_num_layers_per_block": [2, 2],
        "up_num_layers_per_block": [2, 2], "down_blocks_repeat_mappers": [1, 1], "up_blocks_repeat_mappers": [1, 1],
        "block_types_per_layer": [["SDCascadeResBlock", "SDCascadeTimestepBlock"],
                                  ["SDCascadeResBlock", "SDCascadeTimestepBlock", "SDCascadeAttnBlock"]],
        "clip_text_pooled_in_channels": pooled, "clip_text_in_channels": None, "clip_image_in_channels": None,
        "clip_seq": 4, "effnet_in_channels": 16, "pixel_mapper_in_channels": None,
        "timestep_conditioning_type": ["sca"], "switch_level": None, "timestep_ratio_embedding_dim": 64,
        "kernel_size": 3, "self_attn": True, "dropout": [0.0, 0.0],
    }


def prior_config(text=64, pooled=64, image=16):
    return {
        "_class_name": "StableCascadeUNet", "in_channels": 16, "out_channels": 16, "patch_size": 1, "conditioning_dim": 64,
        "block_out_channels": [64, 64], "num_attention_heads": [2, 2], "down_num_layers_per_block": [2, 2],
        "up_num_layers_per_block": [2, 2], "down_blocks_repeat_mappers": [1, 1], "up_blocks_repeat_mappers": [1, 1],
        "block_types_per_layer": [["SDCascadeResBlock", "SDCascadeTimestepBlock", "SDCascadeAttnBlock"]] * 2,
        "clip_text_pooled_in_channels": pooled, "clip_text_in_channels": text, "clip_image_in_channels": image,
        "clip_seq": 4, "effnet_in_channels": None, "pixel_mapper_in_channels": None,
        "timestep_conditioning_type": ["sca", "crp"], "switch_level": [False], "timestep_ratio_embedding_dim": 64,
        "kernel_size": 3, "self_attn": True, "dropout": [0.0, 0.0],
    }


# ---------------------------------------------------------------- DDPMWuerstchenScheduler

S = 0.008
_INIT = math.cos(S / (1 + S) * math.pi * 0.5) ** 2


def alpha_cumprod(t):
    """t in [0, 1] (tensor) -> cos^2((t+s)/(1+s) pi/2) / cos^2(s/(1+s) pi/2), clamped to [1e-4, 0.9999]."""
    return (torch.cos((t + S) / (1 + S) * math.pi * 0.5) ** 2 / _INIT).clamp(1e-4, 0.9999)


class EpsFromX0(nn.Module):
    """The exported stage: the UNet predicts x0 (trained so), the graph outputs the epsilon that x0 implies,
    eps = (x_t - sqrt(abar(t)) x0) / sqrt(1 - abar(t)), so the pipeline's epsilon contract holds. With the cosine schedule's
    abar(1) = 1e-4 an epsilon-trained tiny UNet's error at t ~ 1 is amplified 100x in the sampler's x0 (its first steps
    blow up); predicting x0 keeps that error bounded."""

    def __init__(self, unet):
        super().__init__()
        self.unet = unet

    def forward(self, sample, timestep_ratio, *args, **kwargs):
        x0 = self.unet(sample, timestep_ratio, *args, **kwargs)
        ab = alpha_cumprod(timestep_ratio)[:, None, None, None]
        return (sample - ab.sqrt() * x0) / (1 - ab).sqrt()


def wuerstchen_step(eps, t, t_prev, x, noise):
    """DDPMWuerstchenScheduler.step for scalar t > t_prev (floats)."""
    ab = alpha_cumprod(torch.tensor(t, dtype=torch.float32))
    ab_prev = alpha_cumprod(torch.tensor(t_prev, dtype=torch.float32))
    a = ab / ab_prev
    mu = (1.0 / a).sqrt() * (x - (1 - a) * eps / (1 - ab).sqrt())
    if t_prev == 0:
        return mu
    std = ((1 - a) * (1 - ab_prev) / (1 - ab)).sqrt()
    return mu + std * noise
