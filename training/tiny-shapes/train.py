"""Train tiny-shapes end to end on CPU and export the ONNX model folder.

/usr/bin/python3 training/tiny-shapes/train.py --out models/tiny-shapes            # the full recipe
/usr/bin/python3 training/tiny-shapes/train.py --smoke --out /tmp/tiny-shapes-smoke  # a few iterations of each stage
"""
import argparse
import copy
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data  # noqa: E402
from export import export_folder  # noqa: E402
from models import VAE, TextEncoder, UNet  # noqa: E402

T = 1000
TEXT = {"hidden_size": 64, "layers": 2, "heads": 2}
UNET = {"channels": (64, 128), "sample_size": data.IMAGE_SIZE // 8, "coords": True, "zero_init": True}
VAE_CFG = {"channels": (16, 32, 64, 128), "edge_weight": 0.5}


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def start_run(a):
    """What every recipe step does first: threads, seeds (torch and the returned numpy generator) and the arguments logged."""
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    log(f"args {vars(a)}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    return np.random.default_rng(a.seed)


def lr_at(step, total, peak, warmup, floor=0.05):
    if step < warmup:
        return peak * (step + 1) / warmup
    p = (step - warmup) / max(1, total - warmup)
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, p))))


def to_tensor(images_uint8):
    return torch.from_numpy(images_uint8).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)


def image_gradients(x):
    return x[..., 1:, :] - x[..., :-1, :], x[..., :, 1:] - x[..., :, :-1]


def train_vae(images, iters, batch, rng, lr=1e-3, kl_weight=1e-6, deadline=None):
    """Loss: MSE + 0.5 L1 + edge_weight * L1 of the image gradients (keeps edges and corners sharp, which the shape
    classes depend on: a rounded square reads as a circle) + a tiny KL term."""
    vae = VAE(VAE_CFG["channels"])
    log(f"VAE: {sum(p.numel() for p in vae.parameters()) / 1e6:.2f} M parameters; {iters} iterations of batch {batch}")
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    start = time.time()
    budget = None if deadline is None else deadline - start
    step = 0
    while True:  # schedule progress as in train_unet: iterations, or the time budget where that runs out first
        progress = step / iters
        if budget is not None:
            progress = max(progress, (time.time() - start) / budget)
        if progress >= 1.0:
            break
        for g in opt.param_groups:
            g["lr"] = lr_at(int(progress * iters), iters, lr, 100)
        x = to_tensor(images[rng.integers(len(images), size=batch)])
        rec, kl, _ = vae(x)
        mse = F.mse_loss(rec, x)
        loss = mse + 0.5 * F.l1_loss(rec, x) + kl_weight * kl
        if VAE_CFG["edge_weight"]:
            (ry, rx), (xy, xx) = image_gradients(rec), image_gradients(x)
            loss = loss + VAE_CFG["edge_weight"] * (F.l1_loss(ry, xy) + F.l1_loss(rx, xx))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        if step % 50 == 0 or step == iters - 1:
            el = time.time() - start
            log(f"vae {step}/{iters} mse {mse.item():.5f} kl {kl.item():.1f} progress {progress:.3f} ({(step + 1) / el:.2f} it/s)")
        step += 1
    log(f"vae: {step} iterations done")
    return vae.eval(), time.time() - start


def fill_ratio(img, background_rgb):
    """The fill-ratio reading of bench/.../ShapeClassifier.cs: pixels more than 60 levels from the background, largest
    4-connected component, its pixel count over its bounding box (square 1, circle pi/4, triangle 1/2)."""
    h, w, _ = img.shape
    mask = ((img.astype(np.int64) - np.array(background_rgb)) ** 2).sum(-1) > 60 * 60
    seen, best = np.zeros_like(mask), []
    for y0, x0 in zip(*np.nonzero(mask)):
        if seen[y0, x0]:
            continue
        seen[y0, x0], stack, pts = True, [(y0, x0)], []
        while stack:
            y, x = stack.pop()
            pts.append((y, x))
            for yy, xx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                if 0 <= yy < h and 0 <= xx < w and mask[yy, xx] and not seen[yy, xx]:
                    seen[yy, xx] = True
                    stack.append((yy, xx))
        best = max(best, pts, key=len)
    if not best:
        return 0.0
    ys, xs = np.array(best).T
    return len(best) / ((xs.max() - xs.min() + 1) * (ys.max() - ys.min() + 1))


def shape_of(fill):
    return "square" if fill >= 0.89 else "circle" if fill >= 0.64 else "triangle"


@torch.no_grad()
def vae_heldout_check(vae):
    """The VAE's ceiling for the shape metric: held-out layouts drawn exactly, encoded, decoded, read as the bench does."""
    held = data.make_heldout()["captions"]
    x = to_tensor(np.stack([data.draw(e) for e in held]))
    rec = vae.decoder(vae.encoder(x)[:, :4])
    out = ((rec.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    ok = sum(shape_of(fill_ratio(img, e["background_rgb"])) == e["shape"] for img, e in zip(out, held))
    return F.mse_loss(rec, x).item(), ok / len(held)


@torch.no_grad()
def encode_all(vae, images, batch=32):
    out = []
    for i in range(0, len(images), batch):
        out.append(vae.encoder(to_tensor(images[i:i + batch]))[:, :4])
    return torch.cat(out)


@torch.no_grad()
def center_latents(vae, latents):
    """Moves the per-channel latent mean into quant_conv / post_quant_conv biases (exact for 1x1 convs): zero-mean latents."""
    m = latents.mean(dim=(0, 2, 3))
    vae.encoder.quant_conv.bias[:4] -= m
    w = vae.decoder.post_quant_conv.weight[:, :, 0, 0]
    vae.decoder.post_quant_conv.bias += w @ m
    return latents - m[None, :, None, None]


def train_unet(latents, items, tokenizer, iters, batch, rng, out, lr=8e-4, export_fn=None, deadline=None):
    """iters iterations; with deadline (a time.time() value) the schedule's progress is the larger of step / iters and
    elapsed / available time, so a slow (shared) machine ends at the deadline with a fully decayed learning rate after
    fewer iterations. The EMA weights are exported once when progress passes 2/3 (a usable checkpoint)."""
    text = TextEncoder(len(tokenizer.vocab), TEXT["hidden_size"], TEXT["layers"], TEXT["heads"])
    unet = UNet(UNET["channels"], TEXT["hidden_size"], coords=UNET["coords"], zero_init=UNET["zero_init"])
    params = list(text.parameters()) + list(unet.parameters())
    log(f"UNet {sum(p.numel() for p in unet.parameters()) / 1e6:.2f} M, text encoder {sum(p.numel() for p in text.parameters()) / 1e6:.2f} M parameters; {iters} iterations of batch {batch}")
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    ema_text, ema_unet = copy.deepcopy(text).eval(), copy.deepcopy(unet).eval()
    ema_params = list(ema_text.parameters()) + list(ema_unet.parameters())
    for p in ema_params:
        p.requires_grad_(False)
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, T, dtype=torch.float64) ** 2
    abar = torch.cumprod(1 - betas, 0)
    sqrt_ab, sqrt_1mab = abar.sqrt().float(), (1 - abar).sqrt().float()
    snr = (abar / (1 - abar)).float()
    ids_cache = {}

    def ids(caption):
        if caption not in ids_cache:
            ids_cache[caption] = tokenizer.encode(caption)
        return ids_cache[caption]

    start = time.time()
    budget = None if deadline is None else deadline - start
    checkpointed = False
    step = 0
    while True:
        progress = step / iters
        if budget is not None:
            progress = max(progress, (time.time() - start) / budget)
        if progress >= 1.0:
            break
        for g in opt.param_groups:
            g["lr"] = lr_at(int(progress * iters), iters, lr, 200)
        idx = rng.integers(len(latents), size=batch)
        captions = ["" if rng.random() < 0.1 else data.random_caption(items[i], rng) for i in idx]
        tokens = torch.tensor([ids(c) for c in captions], dtype=torch.int64)
        t = torch.from_numpy(rng.integers(T, size=batch))
        noise = torch.from_numpy(rng.standard_normal((batch, 4) + latents.shape[2:]).astype(np.float32))
        x0 = latents[torch.from_numpy(idx)]
        xt = sqrt_ab[t][:, None, None, None] * x0 + sqrt_1mab[t][:, None, None, None] * noise
        pred = unet(xt, t, text(tokens))
        w = torch.clamp(snr[t], max=5.0) / snr[t]  # min-SNR-5 weighting for epsilon prediction
        loss = (w * (pred - noise).pow(2).mean(dim=(1, 2, 3))).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        decay = min(0.998, (1 + step) / (10 + step))
        with torch.no_grad():
            for e, p in zip(ema_params, params):
                e.mul_(decay).add_(p.detach(), alpha=1 - decay)
        if step % 50 == 0 or step == iters - 1:
            el = time.time() - start
            log(f"unet {step}/{iters} loss {loss.item():.4f} lr {opt.param_groups[0]['lr']:.2e} progress {progress:.3f} ({(step + 1) / el:.2f} it/s, {el / 60:.1f} min)")
        step += 1
        if not checkpointed and progress >= 2 / 3 and export_fn is not None:
            checkpointed = True
            t0 = time.time()
            export_fn(ema_text, ema_unet, f"checkpoint after {step} UNet iterations (schedule progress {progress:.3f})")
            log(f"checkpoint exported to {out} ({time.time() - t0:.1f} s)")
    log(f"unet: {step} iterations done (schedule progress reached 1 {'by iterations' if step >= iters else 'by the time budget'})")
    return ema_text, ema_unet, time.time() - start, step


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="models/tiny-shapes")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--images", type=int, default=30000)
    ap.add_argument("--vae-iters", type=int, default=2000)
    ap.add_argument("--vae-batch", type=int, default=16)
    ap.add_argument("--unet-iters", type=int, default=6000)
    ap.add_argument("--unet-batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--time-budget-min", type=float, default=None,
                    help="whole-run wall-clock budget: the UNet stage ends (lr fully decayed) in time to export by then")
    ap.add_argument("--vae-share", type=float, default=0.2, help="with --time-budget-min: the VAE stage ends by this share of it")
    ap.add_argument("--smoke", action="store_true", help="tiny run of every stage plus a full export")
    a = ap.parse_args()
    if a.smoke:
        a.images, a.vae_iters, a.unet_iters = 512, 20, 30
    run_start = time.time()
    rng = start_run(a)
    times = {}

    t0 = time.time()
    images, items = data.make_dataset(a.images, a.seed)
    tokenizer = data.Tokenizer()
    times["data"] = time.time() - t0
    log(f"data: {len(images)} images in {times['data']:.1f} s; vocab {len(tokenizer.vocab)}")

    vae_deadline = None if a.time_budget_min is None else run_start + 60 * a.time_budget_min * a.vae_share
    vae, times["vae"] = train_vae(images, a.vae_iters, a.vae_batch, rng, deadline=vae_deadline)
    t0 = time.time()
    latents = center_latents(vae, encode_all(vae, images))
    scale = float(1.0 / latents.std())
    latents = latents * scale
    times["encode"] = time.time() - t0
    log(f"latents {tuple(latents.shape)} std(before scaling) {1 / scale:.4f} -> scaling_factor {scale:.5f} ({times['encode']:.1f} s)")
    with torch.no_grad():
        x = to_tensor(images[:256])
        rec = vae.decoder(vae.encoder(x)[:, :4])
        log(f"VAE reconstruction MSE on 256 training images: {F.mse_loss(rec, x).item():.5f}")
    mse, shape_acc = vae_heldout_check(vae)
    log(f"VAE on the held-out layouts (drawn exactly, encoded, decoded): MSE {mse:.5f}, shape read right {100 * shape_acc:.1f} %")

    def export_fn(text, unet, note):
        info = {"seed": str(a.seed), "note": note, "steps": f"vae {a.vae_iters}x{a.vae_batch}, unet up to {a.unet_iters}x{a.unet_batch}"}
        export_folder(a.out, tokenizer, text, unet, vae, scale, TEXT, UNET, VAE_CFG, info)

    deadline = None if a.time_budget_min is None else run_start + 60 * a.time_budget_min - 30
    text, unet, times["unet"], done = train_unet(latents, items, tokenizer, a.unet_iters, a.unet_batch, rng, a.out,
                                                  export_fn=export_fn, deadline=deadline)
    t0 = time.time()
    export_fn(text, unet, f"final, {done} UNet iterations")
    times["export"] = time.time() - t0
    times["total"] = sum(times.values())
    log("times (s): " + json.dumps({k: round(v, 1) for k, v in times.items()}))
    log(f"done -> {a.out}")


if __name__ == "__main__":
    main()
