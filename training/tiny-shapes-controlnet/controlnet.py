"""The tiny-shapes ControlNet (diffusers ControlNetModel's structure at tiny-shapes' size), its mask data, the
residual-taking UNet wrapper and the ONNX export of both.

Structure, as diffusers' ControlNetModel: a conditioning embedding (a small conv stack from the 64x64 control image
down to the 8x8 latent grid, last conv zero-initialised) added after conv_in; a trainable copy of the trained UNet's
time embedding, conv_in, down blocks and mid block; zero-initialised 1x1 convs per skip (controlnet_down_blocks) and
for the mid block (controlnet_mid_block). At initialisation every residual is exactly zero, so the frozen UNet plus
the ControlNet starts as the base model."""
import copy
import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "training", "tiny-shapes"))
import data  # noqa: E402
from models import zero_  # noqa: E402

OUT = os.path.join(ROOT, "models", "tiny-shapes-controlnet")
RESIDUALS = 4  # the UNet's skips: conv_in, down block 0, its downsampler, down block 1
MIN_SIDE, MAX_SIDE = 12, 44  # mask shapes: bounding-box side in pixels, anywhere fully inside the 64x64 canvas


class ConditioningEmbedding(nn.Module):
    """diffusers' ControlNetConditioningEmbedding: conv_in, (conv, stride-2 conv) per level, zero conv_out."""
    def __init__(self, out_channels, channels=(16, 32, 64, 64), cond_channels=3):
        super().__init__()
        self.conv_in = nn.Conv2d(cond_channels, channels[0], 3, padding=1)
        blocks = []
        for cin, cout in zip(channels[:-1], channels[1:]):
            blocks += [nn.Conv2d(cin, cin, 3, padding=1), nn.Conv2d(cin, cout, 3, stride=2, padding=1)]
        self.blocks = nn.ModuleList(blocks)
        self.conv_out = zero_(nn.Conv2d(channels[-1], out_channels, 3, padding=1))

    def forward(self, cond):
        h = F.silu(self.conv_in(cond))
        for b in self.blocks:
            h = F.silu(b(h))
        return self.conv_out(h)


class ControlNet(nn.Module):
    def __init__(self, unet):
        super().__init__()
        c0 = unet.conv_in.out_channels
        c1 = unet.mid_res1.conv1.out_channels
        self.encoder = copy.deepcopy(unet)  # the trained down half; the up half is dropped
        for name in ("up1_res", "up1_attn", "up1_sample", "up0_res", "up0_attn", "norm_out", "conv_out"):
            delattr(self.encoder, name)
        for p in self.encoder.parameters():
            p.requires_grad_(True)
        self.cond_embedding = ConditioningEmbedding(c0)
        self.controlnet_down_blocks = nn.ModuleList(zero_(nn.Conv2d(c, c, 1)) for c in (c0, c0, c0, c1))
        self.controlnet_mid_block = zero_(nn.Conv2d(c1, c1, 1))
        self.residual_channels = [c0, c0, c0, c1]

    def forward(self, sample, timestep, encoder_hidden_states, controlnet_cond, conditioning_scale):
        _, skips, mid = self.encoder.down_and_mid(sample, timestep, encoder_hidden_states, self.cond_embedding(controlnet_cond))
        down = [zc(s) * conditioning_scale for zc, s in zip(self.controlnet_down_blocks, skips)]
        return (*down, self.controlnet_mid_block(mid) * conditioning_scale)


class UNetWithResiduals(nn.Module):
    """The frozen base UNet with the ControlNet residuals as extra graph inputs (what the C# pipeline feeds)."""
    def __init__(self, unet):
        super().__init__()
        self.unet = unet

    def forward(self, sample, timestep, encoder_hidden_states, r0, r1, r2, r3, mid):
        return self.unet(sample, timestep, encoder_hidden_states, [r0, r1, r2, r3], mid)


# ---------------------------------------------------------------- data: a shape anywhere, its mask, a caption

def random_mask_item(rng):
    """A single shape (tiny-shapes' colours, never a held-out combination) of any size in [MIN_SIDE, MAX_SIDE] at any
    centre that keeps it inside the canvas."""
    item = data.random_item(rng)
    side = float(rng.uniform(MIN_SIDE, MAX_SIDE))
    lo, hi = side / 2, data.IMAGE_SIZE - side / 2
    return {"shape": item["shape"], "color": item["color"], "background": item["background"],
            "cx": float(rng.uniform(lo, hi)), "cy": float(rng.uniform(lo, hi)), "side": side}


def coverage(item):
    return data._coverage(item["shape"], item["cx"], item["cy"], item["side"])


def draw_item(item):
    """(image uint8 HxWx3, mask uint8 HxW: 255 where the drawn shape covers at least half of a pixel, else 0)."""
    alpha = coverage(item)
    fg = np.array(data.PALETTE[item["color"]], np.float32)
    bg = np.array(data.PALETTE[item["background"]], np.float32)
    img = bg * (1 - alpha[..., None]) + fg * alpha[..., None]
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), np.where(alpha >= 0.5, 255, 0).astype(np.uint8)


def size_word(side):
    return "small" if side < (data.SIZES["small"] + data.SIZES["large"]) / 2 else "large"


def caption(item, rng):
    """The base model's position-free templates: where the shape goes is the mask's business."""
    s, c, b, z = item["shape"], item["color"], item["background"], size_word(item["side"])
    templates = [f"a {c} {s} on a {b} background", f"a {z} {c} {s} on a {b} background", f"{c} {s} on {b}",
                 f"{z} {c} {s} on {b}", f"a {c} {s}"]
    return templates[rng.integers(len(templates))]


def control_tensor(masks_uint8):
    """[n, H, W] uint8 -> [n, 3, H, W] in [0, 1]: diffusers' control image (RGB, not normalised to [-1, 1])."""
    return torch.from_numpy(masks_uint8).float().div_(255.0)[:, None].expand(-1, 3, -1, -1).contiguous()


def heldout_masks(seed=2468):
    """48 evaluation masks: every held-out (shape, colour, background) of tiny-shapes twice, the first of each pair in
    a corner region or at an off-grid place (centre at least 6 px from every named position), sizes anywhere in range."""
    rng = np.random.default_rng(seed)
    named = [xy for z in data.SIZES for xy in data.position_centers(z).values()]
    out = []
    for shape, color, background in sorted(data.HELDOUT_COMBOS, key=lambda t: (data.SHAPES.index(t[0]), data.COLORS.index(t[1]))):
        for k in range(2):
            while True:
                side = float(rng.uniform(MIN_SIDE, MAX_SIDE))
                lo, hi = side / 2, data.IMAGE_SIZE - side / 2
                if k == 0:  # a corner: centre as near the canvas corner as the size allows
                    cx, cy = (lo if rng.random() < 0.5 else hi), (lo if rng.random() < 0.5 else hi)
                else:
                    cx, cy = float(rng.uniform(lo, hi)), float(rng.uniform(lo, hi))
                    if min(np.hypot(cx - x, cy - y) for x, y in named) < 6:
                        continue
                break
            item = {"shape": shape, "color": color, "background": background, "cx": round(cx, 2), "cy": round(cy, 2),
                    "side": round(side, 2)}
            item["caption"] = f"a {color} {shape} on a {background} background"
            out.append(item)
    return out


def write_png_gray(path, pixels):
    """8-bit greyscale PNG without extra dependencies."""
    import struct
    import zlib
    h, w = pixels.shape
    raw = b"".join(b"\x00" + pixels[y].tobytes() for y in range(h))

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(png)


# ---------------------------------------------------------------- export

def _onnx(module, args, path, inputs, outputs, axes):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with torch.no_grad():
        torch.onnx.export(module, args, tmp, input_names=inputs, output_names=outputs, dynamic_axes=axes,
                          opset_version=17, do_constant_folding=True)
    os.replace(tmp, path)


def residual_names():
    return [f"down_block_{i}_additional_residual" for i in range(RESIDUALS)] + ["mid_block_additional_residual"]


def export(out, controlnet, unet, unet_config, width, info):
    """out/controlnet/model.onnx (+config.json), out/unet/model.onnx: the base UNet's weights with the residual inputs."""
    controlnet = copy.deepcopy(controlnet).eval().float()
    unet = copy.deepcopy(unet).eval().float()
    s = unet_config["sample_size"]
    lat = {0: "batch", 2: "height", 3: "width"}
    x, t, ctx = torch.randn(2, 4, s, s), torch.tensor([999, 1], dtype=torch.int64), torch.randn(2, 77, width)
    cond, scale = torch.rand(2, 3, 8 * s, 8 * s), torch.ones(1)
    names = residual_names()
    # Each residual its own symbolic height/width: they are the latent size at different levels (8x8, 4x4 here), and
    # a session whose free dimensions are bound to the latent size must not bind the smaller ones too.
    res_axes = {n: {0: "batch", 2: f"{n}_height", 3: f"{n}_width"} for n in names}
    _onnx(controlnet, (x, t, ctx, cond, scale), os.path.join(out, "controlnet", "model.onnx"),
          ["sample", "timestep", "encoder_hidden_states", "controlnet_cond", "conditioning_scale"], names,
          dict({"sample": lat, "timestep": {0: "batch"}, "encoder_hidden_states": {0: "batch"}, "controlnet_cond": lat},
               **res_axes))
    with torch.no_grad():
        res = controlnet(x, t, ctx, cond, scale)
    _onnx(UNetWithResiduals(unet), (x, t, ctx, *res), os.path.join(out, "unet", "model.onnx"),
          ["sample", "timestep", "encoder_hidden_states"] + names, ["out_sample"],
          dict({"sample": lat, "timestep": {0: "batch"}, "encoder_hidden_states": {0: "batch"}, "out_sample": lat},
               **res_axes))
    cfg = {k: unet_config[k] for k in ("in_channels", "block_out_channels", "layers_per_block", "cross_attention_dim",
                                        "attention_head_dim", "down_block_types", "flip_sin_to_cos", "freq_shift",
                                        "norm_num_groups", "norm_eps")}
    cfg = dict({"_class_name": "ControlNetModel", "conditioning_channels": 3,
                "conditioning_embedding_out_channels": [16, 32, 64, 64], "controlnet_conditioning_channel_order": "rgb",
                "residual_channels": controlnet.residual_channels}, **cfg)
    with open(os.path.join(out, "controlnet", "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    with open(os.path.join(out, "unet", "config.json"), "w") as f:
        json.dump(dict(unet_config, _edgediffusion={"note": "models/tiny-shapes/unet with the ControlNet residual inputs (same weights)"}), f, indent=2)
        f.write("\n")
    with open(os.path.join(out, "model_index.json"), "w") as f:
        json.dump({"_class_name": "ControlNetModel", "_edgediffusion": dict({"base_model": "tiny-shapes",
                   "conditioning": "mask: 64x64, white (255) where the shape goes, black (0) elsewhere",
                   "recipe": "training/tiny-shapes-controlnet"}, **info)}, f, indent=2)
        f.write("\n")
