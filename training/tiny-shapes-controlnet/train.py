"""Train the tiny-shapes ControlNet (mask conditioning) on top of the frozen shipped models/tiny-shapes and export
models/tiny-shapes-controlnet (controlnet/ and the residual-taking unet/).

/usr/bin/python3 training/tiny-shapes-controlnet/train.py --smoke --out /tmp/cn-smoke        # a few iterations
nohup setsid /usr/bin/python3 training/tiny-shapes-controlnet/train.py --time-budget-min 55 \
    > training/tiny-shapes-controlnet/train.log 2>&1 &
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tiny-shapes-pink-lora"))
import common  # noqa: E402  (the shipped model loaded into torch, Euler sigmas, the colour classifier)
import controlnet as cn  # noqa: E402
from controlnet import data  # noqa: E402


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def lr_at(progress, peak, warmup=0.03, floor=0.05):
    if progress < warmup:
        return peak * max(progress, 1e-3) / warmup
    p = (progress - warmup) / (1 - warmup)
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, p))))


def iou(drawn, mask):
    inter = np.logical_and(drawn, mask).sum()
    union = np.logical_or(drawn, mask).sum()
    return float(inter) / max(1, union)


def drawn_shape(img, background_rgb):
    """Pixels more than 60 levels from the background colour (the classifier's foreground rule)."""
    return ((img.astype(np.int64) - np.array(background_rgb)) ** 2).sum(-1) > 60 * 60


@torch.no_grad()
def sample(text, unet, controlnet, vae, scale, tok, captions, masks, seeds, steps=20, guidance=3.0, control_scale=1.0):
    """Euler as the C# EulerDiscreteScheduler; the control image goes to both halves of the guidance batch."""
    ts, sig = common.euler_sigmas(steps)
    n = len(captions)
    uncond = text(torch.tensor([tok.encode("")]))
    ctx = torch.cat([uncond.expand(n, -1, -1), text(torch.tensor([tok.encode(c) for c in captions]))])
    cond = cn.control_tensor(masks).repeat(2, 1, 1, 1)
    x = torch.stack([torch.randn(4, 8, 8, generator=torch.Generator().manual_seed(int(s))) for s in seeds]) * float(sig[0])
    for k, t in enumerate(ts):
        s = float(sig[k])
        xin = (x / math.sqrt(s * s + 1)).repeat(2, 1, 1, 1)
        tt = torch.full((2 * n,), float(t))
        res = controlnet(xin, tt, ctx, cond, torch.tensor([control_scale]))
        eps = unet(xin, tt, ctx, list(res[:-1]), res[-1])
        e = eps[:n] + guidance * (eps[n:] - eps[:n])
        x = x + e * (float(sig[k + 1]) - s)
    img = vae.decoder(x / scale)
    return ((img.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()


def evaluate(text, unet, controlnet, vae, scale, tok, held, masks):
    imgs = sample(text, unet, controlnet, vae, scale, tok, [e["caption"] for e in held], masks, range(len(held)))
    ious, colours = [], 0
    for img, e, m in zip(imgs, held, masks):
        bg, fg, _ = common.classify(img, data.PALETTE)
        colours += (bg == e["background"]) + (fg == e["color"])
        ious.append(iou(drawn_shape(img, data.PALETTE[e["background"]]), m > 127))
    return float(np.median(ious)), colours / (2 * len(held)), imgs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=cn.OUT)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--images", type=int, default=12000)
    ap.add_argument("--iters", type=int, default=6000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--time-budget-min", type=float, default=None, help="training-loop wall clock: the schedule ends by then")
    ap.add_argument("--export-every-min", type=float, default=10.0)
    ap.add_argument("--checkpoint", default="/tmp/tiny-shapes-controlnet.pt", help="torch state_dict, written at every export")
    ap.add_argument("--smoke", action="store_true")
    a = ap.parse_args()
    if a.smoke:
        a.images, a.iters = 256, 10
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    log(f"args {vars(a)}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    t_start = time.time()

    items = [cn.random_mask_item(rng) for _ in range(a.images)]
    drawn = [cn.draw_item(it) for it in items]
    images = np.stack([d[0] for d in drawn])
    masks = np.stack([d[1] for d in drawn])
    log(f"data: {a.images} single shapes, sides {cn.MIN_SIDE}-{cn.MAX_SIDE} px anywhere on the canvas, masks = drawn "
        f"coverage >= 0.5 ({time.time() - t_start:.1f} s)")

    text, unet, vae, scale = common.load_base()
    tok = data.Tokenizer()
    t0 = time.time()
    with torch.no_grad():
        lat = torch.cat([vae.encoder(torch.from_numpy(images[i:i + 64]).permute(0, 3, 1, 2).float() / 127.5 - 1)[:, :4]
                         for i in range(0, a.images, 64)]) * scale
    control = cn.control_tensor(masks)
    log(f"latents {tuple(lat.shape)} ({time.time() - t0:.1f} s)")

    held = cn.heldout_masks()
    held_masks = np.stack([cn.draw_item(e)[1] for e in held])
    controlnet = cn.ControlNet(unet)
    params = [p for p in controlnet.parameters() if p.requires_grad]
    log(f"ControlNet: {sum(p.numel() for p in params) / 1e6:.2f} M trainable parameters (UNet and text encoder frozen)")
    opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=0.0)

    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, common.T, dtype=torch.float64) ** 2
    abar = torch.cumprod(1 - betas, 0)
    sqrt_ab, sqrt_1mab = abar.sqrt().float(), (1 - abar).sqrt().float()
    snr = (abar / (1 - abar)).float()
    cache = {}

    def embed(c):  # the text encoder is frozen: one forward per distinct caption
        if c not in cache:
            with torch.no_grad():
                cache[c] = text(torch.tensor([tok.encode(c)]))[0]
        return cache[c]

    width = json.load(open(os.path.join(common.MODEL, "text_encoder", "config.json")))["hidden_size"]
    unet_cfg = json.load(open(os.path.join(common.MODEL, "unet", "config.json")))

    def save(step, note):
        controlnet.eval()
        m, c, _ = evaluate(text, unet, controlnet, vae, scale, tok, held, held_masks)
        cn.export(a.out, controlnet, unet, unet_cfg, width, {
            "training": f"training/tiny-shapes-controlnet/train.py: {step} iterations x {a.batch}, {a.images} images, "
                        f"lr {a.lr}, seed {a.seed} ({note})",
            "torch_heldout_median_iou": round(m, 3), "torch_heldout_colours": round(c, 3)})
        torch.save(controlnet.state_dict(), os.path.join(a.checkpoint))
        controlnet.train()
        log(f"export at step {step} ({note}): held-out masks (torch, 20 Euler steps, guidance 3) median IoU {m:.3f}, "
            f"colours {c:.1%} -> {a.out}")

    controlnet.train()
    start = time.time()
    last_export = start
    budget = None if a.time_budget_min is None else 60 * a.time_budget_min
    step, ema = 0, None
    while True:
        progress = step / a.iters
        if budget is not None:
            progress = max(progress, (time.time() - start) / budget)
        if progress >= 1.0:
            break
        for g in opt.param_groups:
            g["lr"] = lr_at(progress, a.lr)
        idx = rng.integers(a.images, size=a.batch)
        ctx = torch.stack([embed("" if rng.random() < 0.1 else cn.caption(items[i], rng)) for i in idx])
        t = torch.from_numpy(rng.integers(common.T, size=a.batch))
        noise = torch.from_numpy(rng.standard_normal((a.batch, 4, 8, 8)).astype(np.float32))
        x0 = lat[torch.from_numpy(idx)]
        xt = sqrt_ab[t][:, None, None, None] * x0 + sqrt_1mab[t][:, None, None, None] * noise
        res = controlnet(xt, t, ctx, control[torch.from_numpy(idx)], torch.ones(1))
        pred = unet(xt, t, ctx, list(res[:-1]), res[-1])
        w = torch.clamp(snr[t], max=5.0) / snr[t]
        loss = (w * (pred - noise).pow(2).mean(dim=(1, 2, 3))).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        if step % 50 == 0:
            el = time.time() - start
            log(f"step {step}/{a.iters} loss {loss.item():.4f} (ema {ema:.4f}) lr {opt.param_groups[0]['lr']:.2e} "
                f"progress {progress:.3f} ({(step + 1) / el:.2f} it/s, {el / 60:.1f} min)")
        step += 1
        if time.time() - last_export > 60 * a.export_every_min:
            save(step, "periodic")
            last_export = time.time()
    log(f"training: {step} iterations in {(time.time() - start) / 60:.1f} min (final loss ema {ema:.4f})")
    save(step, "final")
    log(f"total {(time.time() - t_start) / 60:.1f} min")


if __name__ == "__main__":
    main()
