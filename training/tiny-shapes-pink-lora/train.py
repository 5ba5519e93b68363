"""Train the "pink" LoRA for the shipped models/tiny-shapes and export it in the kohya format.

/usr/bin/python3 training/tiny-shapes-pink-lora/train.py --smoke --out /tmp/pink-smoke.safetensors   # a few iterations
nohup setsid /usr/bin/python3 training/tiny-shapes-pink-lora/train.py > training/tiny-shapes-pink-lora/train.log 2>&1 &
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from common import data  # noqa: E402


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def lr_at(progress, peak, warmup=0.03, floor=0.05):
    import math
    if progress < warmup:
        return peak * max(progress, 1e-3) / warmup
    p = (progress - warmup) / (1 - warmup)
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, p))))


def invert_pink_latents(vae, images, items, lat, scale, steps, batch=64, lr=0.05):
    """Latents of the pictures with pink, optimised (Adam, from the encoder's) so the frozen decoder reproduces them."""
    for p in vae.decoder.parameters():
        p.requires_grad_(False)
    pink = [i for i, it in enumerate(items) if "pink" in (it["color"], it["background"])]
    t0, right_before, right_after = time.time(), 0, 0
    for b in range(0, len(pink), batch):
        idx = torch.tensor(pink[b:b + batch])
        x = torch.from_numpy(images[idx.numpy()]).permute(0, 3, 1, 2).float() / 127.5 - 1
        z = (lat[idx] / scale).clone().requires_grad_(True)
        opt = torch.optim.Adam([z], lr=lr)
        with torch.no_grad():
            right_before += pink_right(vae.decoder(z), [items[i] for i in idx.tolist()])
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            loss = (vae.decoder(z) - x).pow(2).mean()
            loss.backward()
            opt.step()
        with torch.no_grad():
            right_after += pink_right(vae.decoder(z), [items[i] for i in idx.tolist()])
            lat[idx] = z.detach() * scale
        log(f"inverted {min(b + batch, len(pink))}/{len(pink)} pink pictures (loss {loss.item():.4f}, {time.time() - t0:.0f} s)")
    log(f"decoder inversion, {steps} steps: both colours read right from the decoded latents {right_before}/{len(pink)} before, "
        f"{right_after}/{len(pink)} after; latent std now {lat.std():.3f}")
    return lat


def pink_right(decoded, items):
    rgb = ((decoded.clamp(-1, 1) + 1) * 127.5).permute(0, 2, 3, 1).numpy().round().astype(np.uint8)
    return sum(common.classify(img)[:2] == (it["background"], it["color"]) for img, it in zip(rgb, items))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=common.LORA_OUT)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--images", type=int, default=8000)
    ap.add_argument("--pink-share", type=float, default=0.5)
    ap.add_argument("--iters", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--alpha", type=float, default=8.0)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--time-budget-min", type=float, default=None, help="training-loop wall clock: the schedule ends by then")
    ap.add_argument("--init", default=None, help="start from this LoRA file (continue a run)")
    ap.add_argument("--invert-steps", type=int, default=0,
                    help="decoder inversion: Adam steps that move each pink picture's latents until the frozen VAE decoder "
                         "draws the picture (the shipped encoder's latents decode pink as pale purple; check_vae.log)")
    ap.add_argument("--smoke", action="store_true")
    a = ap.parse_args()
    if a.smoke:
        a.images, a.iters = 256, 20
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    log(f"args {vars(a)}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    t_start = time.time()

    # data: half pink items (pink shape / pink background, held-out pink combos excluded), half the base generator's
    items, images = [], np.empty((a.images, 64, 64, 3), np.uint8)
    for i in range(a.images):
        item = common.pink_item(rng) if rng.random() < a.pink_share else data.random_item(rng)
        images[i] = data.draw(item, tuple(rng.uniform(-data.JITTER, data.JITTER, 2)))
        items.append(item)
    npink = sum("pink" in (it["color"], it["background"]) for it in items)
    log(f"data: {a.images} images ({npink} with pink: {sum(it['color'] == 'pink' for it in items)} pink shapes, "
        f"{sum(it['background'] == 'pink' for it in items)} pink backgrounds) in {time.time() - t_start:.1f} s")

    text, unet, vae, scale = common.load_base()
    tok = data.Tokenizer()
    t0 = time.time()
    with torch.no_grad():
        lat = torch.cat([vae.encoder(torch.from_numpy(images[i:i + 64]).permute(0, 3, 1, 2).float() / 127.5 - 1)[:, :4]
                         for i in range(0, a.images, 64)]) * scale
    log(f"latents {tuple(lat.shape)} from the shipped VAE encoder x scaling_factor {scale:.5f}: std {lat.std():.3f} ({time.time() - t0:.1f} s)")
    if a.invert_steps > 0:
        lat = invert_pink_latents(vae, images, items, lat, scale, a.invert_steps)
    del vae

    te_l = common.attach(text, common.te_targets(text), a.rank, a.alpha)
    un_l = common.attach(unet, common.unet_targets(unet), a.rank, a.alpha)
    if a.init:
        init, _ = common.read_safetensors(a.init)
        with torch.no_grad():
            for prefix, loras in (("lora_te_", te_l), ("lora_unet_", un_l)):
                for k, l in loras.items():
                    l.down.weight.copy_(init[f"{prefix}{k}.lora_down.weight"])
                    l.up.weight.copy_(init[f"{prefix}{k}.lora_up.weight"])
        log(f"LoRA weights initialised from {a.init}")
    params = list(te_l.parameters()) + list(un_l.parameters())
    log(f"LoRA rank {a.rank} alpha {a.alpha}: {len(te_l)} text-encoder + {len(un_l)} UNet modules, "
        f"{sum(p.numel() for p in params)} parameters (base frozen)")
    opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=0.0)

    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, common.T, dtype=torch.float64) ** 2
    abar = torch.cumprod(1 - betas, 0)
    sqrt_ab, sqrt_1mab = abar.sqrt().float(), (1 - abar).sqrt().float()
    snr = (abar / (1 - abar)).float()
    cache = {}

    def ids(c):
        if c not in cache:
            cache[c] = tok.encode(c)
        return cache[c]

    text.train(), unet.train()
    start = time.time()
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
        caps = ["" if rng.random() < 0.1 else data.random_caption(items[i], rng) for i in idx]
        tokens = torch.tensor([ids(c) for c in caps])
        t = torch.from_numpy(rng.integers(common.T, size=a.batch))
        noise = torch.from_numpy(rng.standard_normal((a.batch, 4, 8, 8)).astype(np.float32))
        x0 = lat[torch.from_numpy(idx)]
        xt = sqrt_ab[t][:, None, None, None] * x0 + sqrt_1mab[t][:, None, None, None] * noise
        pred = unet(xt, t, text(tokens))
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
    log(f"training: {step} iterations in {(time.time() - start) / 60:.1f} min (final loss ema {ema:.4f})")

    tensors = common.kohya_tensors(te_l, un_l, a.alpha)
    meta = {"ss_network_module": "networks.lora", "ss_network_dim": a.rank, "ss_network_alpha": a.alpha,
            "base_model": "tiny-shapes", "trigger_word": "pink",
            "ss_training_comment": f"training/tiny-shapes-pink-lora/train.py: {step} iterations x {a.batch}, {a.images} images "
                                   f"({a.pink_share:.0%} pink), lr {a.lr}, seed {a.seed}; pink = sRGB {common.PINK}"}
    common.write_safetensors(a.out, tensors, meta)
    log(f"wrote {a.out}: {len(tensors)} tensors, {os.path.getsize(a.out)} bytes; total {(time.time() - t_start) / 60:.1f} min")


if __name__ == "__main__":
    main()
