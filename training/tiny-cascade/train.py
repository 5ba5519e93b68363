"""Train tiny-cascade (three-stage Stable Cascade-style model) on the tiny-shapes data on CPU and export the ONNX folder.

/usr/bin/python3 training/tiny-cascade/train.py --out models/tiny-cascade --threads 1 --time-budget-min 45
/usr/bin/python3 training/tiny-cascade/train.py --smoke --out /tmp/tiny-cascade-smoke

Stage 1: Stage A (Paella-style autoencoder, no quantizer) on the images.
Stage 2: jointly, Stage B (decoder UNet on Stage A's scaled latents, conditioned on effnet + pooled text), the effnet
semantic compressor (trained through Stage B's loss only), Stage C (prior UNet on the effnet latents, detached,
conditioned on the text states) and the text encoder (through both stages' losses). Both diffusion losses:
epsilon prediction, DDPMWuerstchenScheduler's cosine alpha-bar, t ~ U(0, 1), min-SNR-5 weighting.
The EMA weights are exported every --export-every-min minutes (a usable folder at any time) and at the end.
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

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.append(os.path.join(HERE, "..", "tiny-shapes"))  # after HERE: its models.py / export.py are not ours
import data  # noqa: E402  (training/tiny-shapes/data.py: images, captions, tokenizer, held-out set)
import evaluate as ev  # noqa: E402
from models import (ClipText, EffNetCompressor, EpsFromX0, PaellaVQ, StableCascadeUNet, alpha_cumprod,  # noqa: E402
                    decoder_config, prior_config)

TEXT = {"hidden_size": 64, "layers": 2, "heads": 2, "projection_dim": 64}
VQ = {"levels": [32, 64], "latent_channels": 4, "bottleneck_blocks": 6, "edge_weight": 0.5, "latent_noise": 0.05, "boundary_weight": 5}
CLIP_IMG = 16
EFFNET_SIZE = 2  # ceil(64 / 42.67)
PARAM = "x0"  # --param: what the UNets predict in training (the exported graphs output epsilon either way)
EFFNET_INPUT = "rgb"  # --effnet-input: what the semantic compressor sees (rgb: the picture; mask: the shapes' coverage, colour-blind)
PRIOR_FLOOR = 1.0  # --prior-floor: lower clamp of the prior's SNR loss weight (x0 loss)
DECODER_FLOOR = 0.1  # --decoder-floor: the same for Stage B
ATTR_WEIGHT = 0.0  # --attr-weight: weight of the effnet attribute head's loss (0: no head)
# What the attribute head reads from the effnet latents, one softmax each (EfficientNet's classification pre-training gives
# Stable Cascade's compressor its semantics; trained only through Stage B, ours dropped the shape: 0.2 % of its variance).
ATTRIBUTES = {"shape": data.SHAPES, "count": [1, 2], "color": data.COLORS, "background": data.COLORS,
              "position": data.POSITIONS, "size": list(data.SIZES)}


class AttributeHead(torch.nn.Module):
    """Linear classifiers of the picture's attributes on the flattened effnet latents (training only, not exported)."""

    def __init__(self, effnet_values):
        super().__init__()
        self.heads = torch.nn.ModuleDict({k: torch.nn.Linear(effnet_values, len(v)) for k, v in ATTRIBUTES.items()})

    def forward(self, e):
        return {k: h(e.flatten(1)) for k, h in self.heads.items()}


def attribute_labels(items):
    """Class index of each attribute per training item: {name: LongTensor [N]}."""
    return {k: torch.tensor([v.index(it[k]) for it in items]) for k, v in ATTRIBUTES.items()}


def attribute_loss(head, e, labels, idx):
    """Mean cross-entropy over the attributes, and each attribute's batch accuracy."""
    logits = head(e)
    sel = torch.from_numpy(idx)
    losses = {k: F.cross_entropy(z, labels[k][sel]) for k, z in logits.items()}
    acc = {k: (z.argmax(1) == labels[k][sel]).float().mean().item() for k, z in logits.items()}
    return sum(losses.values()) / len(losses), acc


def coverage(images, items):
    """The shapes' coverage alpha in [0, 1] of each picture, solved exactly from its two palette colours
    (picture = background (1 - alpha) + colour alpha): uint8 [N, 64, 64] (alpha x 255)."""
    out = np.empty(images.shape[:3], np.uint8)
    for i in range(0, len(images), 1000):
        x = images[i:i + 1000].astype(np.float32)
        bg = np.array([data.PALETTE[it["background"]] for it in items[i:i + 1000]], np.float32)[:, None, None]
        fg = np.array([data.PALETTE[it["color"]] for it in items[i:i + 1000]], np.float32)[:, None, None]
        d = fg - bg
        a = ((x - bg) * d).sum(-1) / (d * d).sum(-1)
        out[i:i + 1000] = np.clip(np.rint(a * 255), 0, 255).astype(np.uint8)
    return out


def effnet_input(images, masks):
    """What the effnet compressor sees: the picture ([0, 1]) or its coverage mask (the same in all three channels)."""
    if EFFNET_INPUT == "rgb":
        return to01(images)
    return torch.from_numpy(masks).float().div_(255.0)[:, None].expand(-1, 3, -1, -1)


def stage(unet, param):
    """The module the pipeline sees (epsilon out)."""
    return EpsFromX0(unet) if param == "x0" else unet


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def lr_at(step, total, peak, warmup, floor=0.05):
    if step < warmup:
        return peak * (step + 1) / warmup
    p = (step - warmup) / max(1, total - warmup)
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, p))))


def to01(images_uint8):
    return torch.from_numpy(images_uint8).permute(0, 3, 1, 2).float().div_(255.0)


def grads(x):
    return x[..., 1:, :] - x[..., :-1, :], x[..., :, 1:] - x[..., :, :-1]


def progress_of(step, iters, start, budget):
    p = step / iters
    if budget is not None:
        p = max(p, (time.time() - start) / budget)
    return p


def picture_loss(rec, x):
    """Per picture: MSE x4 + L1, x5 within one pixel of an edge of the target x (those pixels decide the classifier's
    mask), + L1 of the image gradients; rec and x in [0, 1]."""
    gy, gx = grads(x)
    edge = F.pad(gy.abs().sum(1, keepdim=True), (0, 0, 0, 1)) + F.pad(gx.abs().sum(1, keepdim=True), (0, 1))
    wpx = 1 + (VQ["boundary_weight"] - 1) * (F.max_pool2d(edge, 3, 1, 1) > 0.05).float()
    loss = (wpx * (4 * (rec - x) ** 2 + (rec - x).abs())).mean(dim=(1, 2, 3))
    (ry, rx), (xy, xx) = grads(rec), grads(x)
    return loss + 2 * VQ["edge_weight"] * ((ry - xy).abs().mean(dim=(1, 2, 3)) + (rx - xx).abs().mean(dim=(1, 2, 3)))


def train_vq(images, iters, batch, rng, lr=2e-3, deadline=None):
    """Plain autoencoder (no quantizer): MSE + 0.5 L1 (x5 within one pixel of the target's edges) + 0.5 L1 of the image
    gradients, on [0, 1] pictures (x2, so the weights read as on [-1, 1]); the latents get 5 % (of their batch std) Gaussian noise before decoding so the decoder
    tolerates Stage B's imperfect latents."""
    vq = PaellaVQ(VQ["levels"], VQ["latent_channels"], VQ["bottleneck_blocks"])
    log(f"Stage A: encoder {sum(p.numel() for p in vq.encoder.parameters()) / 1e6:.3f} M, decoder {sum(p.numel() for p in vq.decoder.parameters()) / 1e6:.3f} M parameters; up to {iters} x {batch}")
    opt = torch.optim.AdamW(vq.parameters(), lr=lr, weight_decay=0.0)
    start = time.time()
    budget = None if deadline is None else deadline - start
    step = 0
    while True:
        p = progress_of(step, iters, start, budget)
        if p >= 1:
            break
        for g in opt.param_groups:
            g["lr"] = lr_at(int(p * iters), iters, lr, 100)
        x = to01(images[rng.integers(len(images), size=batch)])
        z = vq.encoder(x)
        z = z + VQ["latent_noise"] * z.detach().std() * torch.randn_like(z)
        rec = vq.decoder(z)
        mse = F.mse_loss(rec, x)
        loss = picture_loss(rec, x).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vq.parameters(), 1.0)
        opt.step()
        if step % 100 == 0:
            el = time.time() - start
            log(f"vq {step}/{iters} mse {mse.item():.5f} progress {p:.3f} ({(step + 1) / el:.2f} it/s, {el / 60:.1f} min)")
        step += 1
    log(f"vq: {step} iterations done")
    return vq.eval(), time.time() - start, step


@torch.no_grad()
def encode_all(enc, images, batch=64):
    return torch.cat([enc(to01(images[i:i + batch])) for i in range(0, len(images), batch)])


@torch.no_grad()
def center(vq, latents):
    """Per-channel latent mean folded into the encoder's last conv bias and the decoder's first 1x1 conv (exact)."""
    m = latents.mean(dim=(0, 2, 3))
    vq.encoder.down_blocks[-1].bias -= m
    first = vq.decoder.up_blocks[0][0]
    first.bias += first.weight[:, :, 0, 0] @ m
    return latents - m[None, :, None, None]


@torch.no_grad()
def vq_heldout(vq):
    held = data.make_heldout()["captions"]
    x = to01(np.stack([data.draw(e) for e in held]))
    rec = vq.decoder(vq.encoder(x)).clamp(0, 1)
    imgs = (rec * 255).round().byte().permute(0, 2, 3, 1).numpy()
    res, _ = ev.score(imgs, held)
    return F.mse_loss(rec, x).item(), res


def make_modules(vocab):
    text = ClipText(vocab, TEXT["hidden_size"], TEXT["layers"], TEXT["heads"], TEXT["projection_dim"])
    effnet = EffNetCompressor(16)
    decoder = StableCascadeUNet(decoder_config(TEXT["projection_dim"]))
    prior = StableCascadeUNet(prior_config(TEXT["hidden_size"], TEXT["projection_dim"], CLIP_IMG))
    return text, effnet, decoder, prior


def load_state(path):
    """evaluate.py --backend torch: the EMA modules saved by train.py, as evaluate's sampling functions."""
    st = torch.load(path)
    text, effnet, decoder, prior = make_modules(st["vocab"])
    vq = PaellaVQ(VQ["levels"], VQ["latent_channels"], VQ["bottleneck_blocks"])
    for m, k in ((text, "text"), (effnet, "effnet"), (decoder, "decoder"), (prior, "prior"), (vq, "vq")):
        m.load_state_dict(st[k])
        m.eval()
    param = st.get("param", "eps")
    return ev.torch_fns(text, stage(prior, param), stage(decoder, param), vq.decoder, CLIP_IMG, EFFNET_SIZE)


def diffusion_loss(model, x0, rng, param="x0", floor=0.1, pixel_loss=None, **cond):
    """param eps: epsilon MSE, min-SNR-5 weighted; param x0: the UNet predicts x0, MSE weighted clamp(SNR, floor, 5)
    (= epsilon MSE for SNR in [floor, 5], capped like min-SNR above, floored below so the high-noise steps still train),
    plus pixel_loss(pred) per sample where given (x0 only)."""
    assert pixel_loss is None or param == "x0", "pixel_loss needs the x0 parameterisation"
    b = x0.shape[0]
    t = torch.from_numpy(rng.random(b).astype(np.float32))
    ab = alpha_cumprod(t)
    noise = torch.from_numpy(rng.standard_normal(x0.shape).astype(np.float32))
    xt = ab.sqrt()[:, None, None, None] * x0 + (1 - ab).sqrt()[:, None, None, None] * noise
    pred = model(xt, t, **cond)
    snr = ab / (1 - ab)
    if param == "x0":
        per_sample = (pred - x0).pow(2).mean(dim=(1, 2, 3))
        if pixel_loss is not None:  # pixel_loss(pred) -> per-sample loss of the predicted x0 in picture space
            per_sample = per_sample + pixel_loss(pred)
        return (torch.clamp(snr, floor, 5.0) * per_sample).mean()
    w = torch.clamp(snr, max=5.0) / snr
    return (w * (pred - noise).pow(2).mean(dim=(1, 2, 3))).mean()


@torch.no_grad()
def ema_update(ema_params, params, step):
    """Exponential moving average with warm-up: decay (1+step)/(10+step), capped at 0.998."""
    decay = min(0.998, (1 + step) / (10 + step))
    for q, w in zip(ema_params, params):
        q.mul_(decay).add_(w.detach(), alpha=1 - decay)


def train_joint(images, masks, latents, items, tokenizer, iters, batch, rng, lr, deadline, export_every, export_fn, eval_fn, init=None):
    text, effnet, decoder, prior = make_modules(len(tokenizer.vocab))
    mods = {"text": text, "effnet": effnet, "decoder": decoder, "prior": prior}
    if init is not None:  # --resume: continue from the EMA modules of an earlier run's state.pt
        for k, m in mods.items():
            m.load_state_dict(init[k])
    for k, m in mods.items():
        log(f"{k}: {sum(p.numel() for p in m.parameters()) / 1e6:.3f} M parameters")
    params = [p for m in mods.values() for p in m.parameters()]
    head, labels = None, None
    if ATTR_WEIGHT > 0:
        head = AttributeHead(16 * EFFNET_SIZE * EFFNET_SIZE)
        labels = attribute_labels(items)
        log(f"effnet attribute head ({', '.join(ATTRIBUTES)}), loss weight {ATTR_WEIGHT}")
    head_params = [] if head is None else list(head.parameters())
    opt = torch.optim.AdamW(params + head_params, lr=lr, weight_decay=0.01)
    ema = {k: copy.deepcopy(m).eval() for k, m in mods.items()}
    ema_params = [p for m in ema.values() for p in m.parameters()]
    for p in ema_params:
        p.requires_grad_(False)
    ids_cache = {}

    def ids(c):
        if c not in ids_cache:
            ids_cache[c] = tokenizer.encode(c)
        return ids_cache[c]

    log(f"joint stage: up to {iters} x {batch}")
    start = time.time()
    budget = None if deadline is None else deadline - start
    last_export = start
    step, lb, lc, acc = 0, 0.0, 0.0, {}
    while True:
        p = progress_of(step, iters, start, budget)
        if p >= 1:
            break
        for g in opt.param_groups:
            g["lr"] = lr_at(int(p * iters), iters, lr, 200)
        idx = rng.integers(len(images), size=batch)
        caps = ["" if rng.random() < 0.1 else data.random_caption(items[i], rng) for i in idx]
        tokens = torch.tensor([ids(c) for c in caps], dtype=torch.int32)
        pooled, _, hidden = text(tokens)
        pooled = pooled[:, None]
        e = effnet(effnet_input(images[idx], masks[idx]))
        e_cond = e + 0.05 * torch.randn_like(e)
        loss_b = diffusion_loss(decoder, latents[torch.from_numpy(idx)], rng, PARAM, DECODER_FLOOR, clip_text_pooled=pooled, effnet=e_cond)
        loss_c = diffusion_loss(prior, e.detach(), rng, PARAM, PRIOR_FLOOR, clip_text_pooled=pooled, clip_text=hidden,
                                clip_img=torch.zeros(batch, 1, CLIP_IMG))
        loss = loss_b + loss_c
        if head is not None:
            loss_a, batch_acc = attribute_loss(head, e, labels, idx)
            loss = loss + ATTR_WEIGHT * loss_a
            acc = {k: batch_acc[k] if step == 0 else 0.98 * acc[k] + 0.02 * batch_acc[k] for k in batch_acc}
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params + head_params, 1.0)
        opt.step()
        ema_update(ema_params, params, step)
        lb, lc = (0.98 * lb + 0.02 * loss_b.item(), 0.98 * lc + 0.02 * loss_c.item()) if step else (loss_b.item(), loss_c.item())
        if step % 50 == 0:
            el = time.time() - start
            log(f"joint {step}/{iters} loss_b {loss_b.item():.4f} (avg {lb:.4f}) loss_c {loss_c.item():.4f} (avg {lc:.4f}) "
                f"lr {opt.param_groups[0]['lr']:.2e} progress {p:.3f} ({(step + 1) / el:.2f} it/s, {el / 60:.1f} min)"
                + ("" if not acc else "; effnet attribute accuracy (avg) " + " ".join(f"{k} {100 * v:.0f} %" for k, v in acc.items())))
        step += 1
        if export_every and time.time() - last_export >= 60 * export_every:
            t0 = time.time()
            export_fn(ema, f"checkpoint after {step} joint iterations (schedule progress {p:.3f})")
            eval_fn(ema, f"checkpoint {step}")
            log(f"checkpoint exported + evaluated ({time.time() - t0:.1f} s)")
            last_export = time.time()
    log(f"joint: {step} iterations done (schedule progress reached 1 {'by iterations' if step >= iters else 'by the time budget'})")
    return ema, time.time() - start, step


@torch.no_grad()
def effnet_all(effnet, images, masks, batch=500):
    return torch.cat([effnet(effnet_input(images[i:i + batch], masks[i:i + batch])) for i in range(0, len(images), batch)])


def train_alone(module, batch_loss, iters, rng, lr, deadline, name, log_every=100):
    """One module alone on a batch loss (batch_loss() draws its own batch from rng): AdamW, warm-up 100, cosine by
    iterations or time (whichever is further), grad clip 1, EMA. Trains `module` in place; returns its EMA copy, the
    seconds and the iterations."""
    ema = copy.deepcopy(module).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    opt = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=0.01)
    start = time.time()
    budget = None if deadline is None else deadline - start
    step, avg = 0, None
    while True:
        p = progress_of(step, iters, start, budget)
        if p >= 1:
            break
        for g in opt.param_groups:
            g["lr"] = lr_at(int(p * iters), iters, lr, 100)
        loss = batch_loss()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
        opt.step()
        ema_update(ema.parameters(), module.parameters(), step)
        avg = loss.item() if avg is None else 0.98 * avg + 0.02 * loss.item()
        if step % log_every == 0:
            el = time.time() - start
            log(f"{name} {step}/{iters} loss {loss.item():.4f} (avg {avg:.4f}) lr {opt.param_groups[0]['lr']:.2e} progress {p:.3f} "
                f"({(step + 1) / el:.2f} it/s, {el / 60:.1f} min)")
        step += 1
    log(f"{name}: {step} iterations done")
    return ema, time.time() - start, step


def train_prior(prior, text, effnet_latents, items, tokenizer, iters, batch, rng, lr, deadline, floor=1.0, log_every=100):
    """Stage C alone on fixed targets (the frozen EMA effnet's latents of every training picture, computed once) and the
    frozen text encoder: the prior no longer chases a compressor that moves under it, and at a 2x2 map it is cheap, so
    it gets large batches. x0 loss weighted clamp(SNR, floor, 5): floor 1 keeps the high-noise steps (where the prior
    must read the caption) at full weight. Trains `prior` in place; returns its EMA copy."""
    log(f"prior stage: up to {iters} x {batch}, {len(effnet_latents)} fixed effnet targets, loss floor {floor}")

    def batch_loss():
        idx = rng.integers(len(effnet_latents), size=batch)
        caps = ["" if rng.random() < 0.1 else data.random_caption(items[i], rng) for i in idx]
        with torch.no_grad():
            pooled, _, hidden = text(torch.tensor([tokenizer.encode(c) for c in caps], dtype=torch.int32))
        return diffusion_loss(prior, effnet_latents[torch.from_numpy(idx)], rng, "x0", floor,
                              clip_text_pooled=pooled[:, None], clip_text=hidden, clip_img=torch.zeros(batch, 1, CLIP_IMG))

    return train_alone(prior, batch_loss, iters, rng, lr, deadline, "prior", log_every)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="models/tiny-cascade")
    ap.add_argument("--state", default=os.path.join(HERE, "state.pt"), help="torch state of the EMA modules (for evaluate.py --backend torch)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--images", type=int, default=30000)
    ap.add_argument("--vq-iters", type=int, default=3000)
    ap.add_argument("--vq-batch", type=int, default=16)
    ap.add_argument("--iters", type=int, default=8000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--time-budget-min", type=float, default=None)
    ap.add_argument("--vq-share", type=float, default=0.2)
    ap.add_argument("--export-every-min", type=float, default=8.0)
    ap.add_argument("--param", choices=["x0", "eps"], default="x0", help="what the UNets learn to predict (exports output epsilon either way)")
    ap.add_argument("--effnet-input", choices=["rgb", "mask"], default="rgb", help="what the effnet compressor sees (rgb: the picture; mask: colour-blind coverage, an experiment: Stage B then has to read the colours from the pooled text, which it did not learn)")
    ap.add_argument("--prior-share", type=float, default=0.25, help="share of the time budget for the final prior-only stage (0: none)")
    ap.add_argument("--prior-iters", type=int, default=3000)
    ap.add_argument("--prior-batch", type=int, default=128)
    ap.add_argument("--prior-lr", type=float, default=1e-3)
    ap.add_argument("--prior-floor", type=float, default=1.0, help="lower clamp of the prior's SNR loss weight (joint and prior stages)")
    ap.add_argument("--decoder-floor", type=float, default=0.1, help="lower clamp of Stage B's SNR loss weight")
    ap.add_argument("--attr-weight", type=float, default=0.0, help="weight of a linear attribute head's cross-entropy on the effnet latents (shape, count, colours, position, size; 0: none), so the compressor keeps the shape")
    ap.add_argument("--resume", default=None, help="start the joint stage from the EMA modules of this state.pt (same --images/--seed/--resume-vq)")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--resume-vq", default=None, help="skip Stage A: load the (uncentred) Stage A saved as <state>.stage_a by an earlier run")
    a = ap.parse_args()
    if a.smoke:
        a.images, a.vq_iters, a.iters, a.prior_iters, a.prior_batch = 512, 20, 30, 10, 16
    global PARAM, EFFNET_INPUT, PRIOR_FLOOR, DECODER_FLOOR, ATTR_WEIGHT
    PARAM, EFFNET_INPUT, PRIOR_FLOOR, DECODER_FLOOR, ATTR_WEIGHT = a.param, a.effnet_input, a.prior_floor, a.decoder_floor, a.attr_weight
    init = torch.load(a.resume) if a.resume else None
    run_start = time.time()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    log(f"args {vars(a)}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    times = {}

    t0 = time.time()
    images, items = data.make_dataset(a.images, a.seed)
    tokenizer = data.Tokenizer()
    masks = coverage(images, items)
    times["data"] = time.time() - t0
    log(f"data: {len(images)} images in {times['data']:.1f} s; vocab {len(tokenizer.vocab)}")

    vq_deadline = None if a.time_budget_min is None else run_start + 60 * a.time_budget_min * a.vq_share
    if a.resume_vq:
        vq = PaellaVQ(VQ["levels"], VQ["latent_channels"], VQ["bottleneck_blocks"])
        st = torch.load(a.resume_vq)
        vq.load_state_dict(st["vq"])
        vq.eval()
        times["vq"], vq_steps = 0.0, st["steps"]
        log(f"Stage A loaded from {a.resume_vq} ({vq_steps} iterations)")
    else:
        vq, times["vq"], vq_steps = train_vq(images, a.vq_iters, a.vq_batch, rng, deadline=vq_deadline)
        torch.save({"vq": vq.state_dict(), "steps": vq_steps}, a.state + ".stage_a")
    t0 = time.time()
    lat = center(vq, encode_all(vq.encoder, images))
    scale_factor = float(lat.std())
    latents = lat / scale_factor
    times["encode"] = time.time() - t0
    log(f"Stage A latents {tuple(latents.shape)}: std {scale_factor:.5f} -> scale_factor {scale_factor:.5f} (latents for B = centred encoder output / scale_factor) ({times['encode']:.1f} s)")
    mse, res = vq_heldout(vq)
    log(f"Stage A on the held-out layouts (drawn exactly, encoded, decoded): MSE {mse:.5f}, read: " + json.dumps({k: round(100 * v, 1) for k, v in res.items()}))

    from export import export_folder  # noqa: E402

    held = data.make_heldout()["captions"]
    info = {"seed": str(a.seed), "steps": f"vq {vq_steps}x{a.vq_batch}; joint up to {a.iters}x{a.batch}"}

    def export_fn(ema, note):
        export_folder(a.out, tokenizer, ema["text"], stage(ema["prior"], PARAM), stage(ema["decoder"], PARAM), vq, scale_factor,
                      TEXT, VQ, CLIP_IMG, EFFNET_SIZE, dict(info, note=note, param=PARAM))
        torch.save({"vocab": len(tokenizer.vocab), "scale_factor": scale_factor, "param": PARAM, "effnet_input": EFFNET_INPUT,
                    **{k: m.state_dict() for k, m in ema.items()}, "vq": vq.state_dict()}, a.state)

    def eval_fn(ema, label):
        t0 = time.time()
        fns = ev.torch_fns(ema["text"], stage(ema["prior"], PARAM), stage(ema["decoder"], PARAM), vq.decoder, CLIP_IMG, EFFNET_SIZE)
        entries = held[:12] if a.smoke else held
        totals, _ = ev.evaluate(fns, entries, tokenizer, (0,), scale_factor)
        log(f"eval {label} (held-out, seed 0, {len(entries)} pictures, {time.time() - t0:.1f} s): " + json.dumps({k: round(100 * v, 1) for k, v in totals.items()}))

    deadline = None if a.time_budget_min is None else run_start + 60 * a.time_budget_min - 40
    joint_deadline = None if deadline is None else deadline - a.prior_share * (deadline - time.time())
    ema, times["joint"], steps = train_joint(images, masks, latents, items, tokenizer, a.iters, a.batch, rng, a.lr, joint_deadline,
                                             a.export_every_min, export_fn, eval_fn, init)
    note = f"final, {steps} joint iterations"
    if a.prior_share > 0:
        export_fn(ema, f"checkpoint after the joint stage, {steps} iterations")
        eval_fn(ema, "after the joint stage")
        t0 = time.time()
        targets = effnet_all(ema["effnet"], images, masks)
        log(f"effnet targets {tuple(targets.shape)} of the frozen EMA compressor ({time.time() - t0:.1f} s)")
        prior = copy.deepcopy(ema["prior"]).train()
        for q in prior.parameters():
            q.requires_grad_(True)
        ema["prior"], times["prior"], psteps = train_prior(prior, ema["text"], targets, items, tokenizer, a.prior_iters, a.prior_batch,
                                                           rng, a.prior_lr, deadline, floor=a.prior_floor)
        note += f" + {psteps} prior-only iterations x {a.prior_batch}"
        info["steps"] += f"; prior-only up to {a.prior_iters}x{a.prior_batch}"
    t0 = time.time()
    export_fn(ema, note)
    times["export"] = time.time() - t0
    times["total"] = time.time() - run_start
    log("times (s): " + json.dumps({k: round(v, 1) for k, v in times.items()}))
    eval_fn(ema, "final")
    log(f"done -> {a.out}")


if __name__ == "__main__":
    main()
