"""Held-out evaluation of tiny-cascade: sample the held-out captions, read colours / shapes / positions.

/usr/bin/python3 training/tiny-cascade/evaluate.py --model models/tiny-cascade [--seeds 2] [--backend onnx|torch]

Inference procedure (what the C# pipeline does): text encoder on the caption and on "" (prior's unconditional);
Stage C from N(0, 1) [B,16,2,2], 20 DDPMWuerstchen steps (timesteps linspace(1, 0, 21) without the last), guidance 4
(eps = uncond + 4 (cond - uncond)), clip_img zeros; Stage B from N(0, 1) [B,4,16,16], 10 steps, no guidance, effnet =
Stage C's result, clip_text_pooled = text_embeds; VQGAN decoder on latents * scale_factor, clamped to [0, 1].

The reading mirrors bench/EdgeDiffusion.Bench/Shapes/ShapeClassifier.cs: background = border median (nearest palette
colour), foreground = pixels more than 60 levels from it, colour = dominant non-background palette colour among them,
shape = fill ratio of the largest 4-connected foreground component in its bounding box, position = centroid on 3x3.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.append(os.path.join(HERE, "..", "tiny-shapes"))  # after HERE: its models.py / export.py are not ours
import data  # noqa: E402  (training/tiny-shapes/data.py)
from models import wuerstchen_step  # noqa: E402

PALETTE = {k: np.array(v) for k, v in data.PALETTE.items()}


def nearest(p):
    return min(PALETTE, key=lambda k: int(((PALETTE[k] - p) ** 2).sum()))


def shape_of(fill):
    return "square" if fill >= 0.89 else "circle" if fill >= 0.64 else "triangle"


def position_of(fx, fy):
    row = "top" if fy < 1 / 3 else "" if fy < 2 / 3 else "bottom"
    col = "left" if fx < 1 / 3 else "" if fx < 2 / 3 else "right"
    if not row and not col:
        return "center"
    return f"{row} {col}".strip()


def largest_component(mask):
    h, w = mask.shape
    seen = np.zeros_like(mask)
    best = (0, 0, 0, 0, 0)
    for y0, x0 in zip(*np.nonzero(mask)):
        if seen[y0, x0]:
            continue
        seen[y0, x0] = True
        stack, n, x1, y1, x2, y2 = [(y0, x0)], 0, w, h, -1, -1
        while stack:
            y, x = stack.pop()
            n += 1
            x1, y1, x2, y2 = min(x1, x), min(y1, y), max(x2, x), max(y2, y)
            for yy, xx in ((y, x - 1), (y, x + 1), (y - 1, x), (y + 1, x)):
                if 0 <= yy < h and 0 <= xx < w and mask[yy, xx] and not seen[yy, xx]:
                    seen[yy, xx] = True
                    stack.append((yy, xx))
        if n > best[0]:
            best = (n, x1, y1, x2, y2)
    return best


def read(img):
    """img uint8 [H, W, 3] -> dict(background, color, shape, position, fill)."""
    h, w, _ = img.shape
    px = img.astype(np.int64)
    border = np.concatenate([px[0], px[-1], px[1:-1, 0], px[1:-1, -1]])
    median = np.sort(border, axis=0)[len(border) // 2]
    background = nearest(median)
    mask = ((px - median) ** 2).sum(-1) > 60 * 60
    count = int(mask.sum())
    votes = {}
    for p in px[mask]:
        c = nearest(p)
        if c != background:
            votes[c] = votes.get(c, 0) + 1
    if count < 4 or not votes:
        return {"background": background, "color": None, "shape": None, "position": None, "fill": 0.0}
    color = max(votes, key=votes.get)
    n, x1, y1, x2, y2 = largest_component(mask)
    fill = n / ((x2 - x1 + 1) * (y2 - y1 + 1))
    ys, xs = np.nonzero(mask)
    return {"background": background, "color": color, "shape": shape_of(fill),
            "position": position_of(xs.mean() / w, ys.mean() / h), "fill": float(fill)}


# ---------------------------------------------------------------- sampling

def timesteps(n):
    return [float(t) for t in np.linspace(1.0, 0.0, n + 1)]


@torch.no_grad()
def sample(fns, captions, tokenizer, seed, prior_steps=20, decoder_steps=10, guidance=4.0, scale_factor=1.0, batch=72):
    """fns: text(ids int32 [B,77]) -> (text_embeds, last_hidden_state, hidden_L); prior(sample, r, pooled, text, img);
    decoder(sample, r, pooled, effnet); vqgan(latent) -> [0,1]. Returns uint8 [N, 64, 64, 3]."""
    out = []
    g = torch.Generator().manual_seed(seed)
    empty = torch.tensor([tokenizer.encode("")], dtype=torch.int32)
    u_pooled, _, u_hidden = fns["text"](empty)
    for i in range(0, len(captions), batch):
        caps = captions[i:i + batch]
        b = len(caps)
        ids = torch.tensor([tokenizer.encode(c) for c in caps], dtype=torch.int32)
        pooled, _, hidden = fns["text"](ids)
        pooled = pooled[:, None]
        c_pooled = torch.cat([pooled, u_pooled[:, None].expand(b, -1, -1)])
        c_hidden = torch.cat([hidden, u_hidden.expand(b, -1, -1)])
        img = torch.zeros(2 * b, 1, fns["clip_img_dim"])
        x = torch.randn(b, 16, fns["effnet_size"], fns["effnet_size"], generator=g)
        ts = timesteps(prior_steps)
        for t, tp in zip(ts[:-1], ts[1:]):
            eps = fns["prior"](torch.cat([x, x]), torch.full((2 * b,), t), c_pooled, c_hidden, img)
            e_c, e_u = eps.chunk(2)
            eps = e_u + guidance * (e_c - e_u) if guidance > 1 else e_c
            x = wuerstchen_step(eps, t, tp, x, torch.randn(x.shape, generator=g))
        effnet = x
        z = torch.randn(b, 4, 16, 16, generator=g)
        ts = timesteps(decoder_steps)
        for t, tp in zip(ts[:-1], ts[1:]):
            eps = fns["decoder"](z, torch.full((b,), t), pooled, effnet)
            z = wuerstchen_step(eps, t, tp, z, torch.randn(z.shape, generator=g))
        imgs = fns["vqgan"](z * scale_factor).clamp(0, 1)
        out.append((imgs * 255).round().byte().permute(0, 2, 3, 1).numpy())
    return np.concatenate(out)


def write_png(path, img):
    """uint8 [H, W, 3] -> PNG (zlib, no dependencies)."""
    import struct
    import zlib
    h, w, _ = img.shape
    raw = b"".join(b"\x00" + img[y].tobytes() for y in range(h))

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def grid(images, cols=12):
    n = len(images)
    rows = (n + cols - 1) // cols
    out = np.full((rows * 66, cols * 66, 3), 128, np.uint8)
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        out[r * 66 + 1:r * 66 + 65, c * 66 + 1:c * 66 + 65] = im
    return out


def score(images, entries):
    n = len(entries)
    singles = [i for i, e in enumerate(entries) if e["count"] == 1]
    r = [read(img) for img in images]
    res = {
        "background": sum(r[i]["background"] == e["background"] for i, e in enumerate(entries)) / n,
        "color": sum(r[i]["color"] == e["color"] for i, e in enumerate(entries)) / n,
        "shape": sum(r[i]["shape"] == e["shape"] for i, e in enumerate(entries)) / n,
        "shape_single": sum(r[i]["shape"] == entries[i]["shape"] for i in singles) / len(singles),
        "position_single": sum(r[i]["position"] == entries[i]["position"] for i in singles) / len(singles),
    }
    return res, r


def shape_by_kind(per_seed, entries):
    """Shapes read right per kind of caption ("small triangle", "pair of squares", ...) over all seeds, as "k/n": the
    total hides which kind is weak (small corners are)."""
    counts = {}
    for _, _, readings in per_seed:
        for r, e in zip(readings, entries):
            kind = f"pair of {e['shape']}s" if e["count"] == 2 else f"{e['size']} {e['shape']}"
            right, n = counts.get(kind, (0, 0))
            counts[kind] = (right + (r["shape"] == e["shape"]), n + 1)
    return {k: f"{right}/{n}" for k, (right, n) in sorted(counts.items())}


def torch_fns(text, prior, decoder, vqgan_decoder, clip_img_dim, effnet_size=2):
    return {
        "text": lambda ids: text(ids),
        "prior": lambda s, r, p, t, i: prior(s, r, p, t, i),
        "decoder": lambda s, r, p, e: decoder(s, r, p, effnet=e),
        "vqgan": lambda z: vqgan_decoder(z),
        "clip_img_dim": clip_img_dim, "effnet_size": effnet_size,
    }


def evaluate(fns, entries, tokenizer, seeds=(0,), scale_factor=1.0, guidance=4.0, prior_steps=20, decoder_steps=10):
    totals, per_seed = {}, []
    for s in seeds:
        imgs = sample(fns, [e["caption"] for e in entries], tokenizer, s, prior_steps, decoder_steps, guidance, scale_factor)
        res, readings = score(imgs, entries)
        per_seed.append((res, imgs, readings))
        for k, v in res.items():
            totals[k] = totals.get(k, 0.0) + v / len(seeds)
    return totals, per_seed


def onnx_fns(model):
    from onnx_numpy import run_onnx  # noqa: E402
    import onnx
    graphs = {k: onnx.load(os.path.join(model, k, "model.onnx")) for k in ("text_encoder", "prior_prior", "decoder", "vqgan")}
    cfg = json.load(open(os.path.join(model, "prior_prior", "config.json")))
    t = lambda a: torch.from_numpy(np.asarray(a, dtype=np.float32))  # noqa: E731

    layers = json.load(open(os.path.join(model, "text_encoder", "config.json")))["num_hidden_layers"]

    def text(ids):
        o = run_onnx(graphs["text_encoder"], {"input_ids": ids.numpy().astype(np.int32)})
        return t(o["text_embeds"]), t(o["last_hidden_state"]), t(o[f"hidden_states.{layers}"])
    return {
        "text": text,
        "prior": lambda s, r, p, tx, i: t(run_onnx(graphs["prior_prior"], {"sample": s.numpy(), "timestep_ratio": r.numpy(), "clip_text_pooled": p.numpy(), "clip_text": tx.numpy(), "clip_img": i.numpy()})["out_sample"]),
        "decoder": lambda s, r, p, e: t(run_onnx(graphs["decoder"], {"sample": s.numpy(), "timestep_ratio": r.numpy(), "clip_text_pooled": p.numpy(), "effnet": e.numpy()})["out_sample"]),
        "vqgan": lambda z: t(run_onnx(graphs["vqgan"], {"latent_sample": z.numpy()})["sample"]),
        "clip_img_dim": cfg["clip_image_in_channels"], "effnet_size": cfg["sample_size"],
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/tiny-cascade")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--guidance", type=float, default=None)
    ap.add_argument("--backend", choices=["onnx", "torch"], default="onnx",
                    help="onnx: the exported files through the numpy interpreter (onnx_numpy.py); torch: the modules in state.pt")
    ap.add_argument("--state", default=os.path.join(HERE, "state.pt"), help="torch backend: the EMA modules train.py saved")
    ap.add_argument("--limit", type=int, default=None, help="only the first N held-out captions (the numpy ONNX run is slow)")
    ap.add_argument("--png", default=None, help="write the pictures as one grid PNG (12 a row, held-out order, seed after seed)")
    ap.add_argument("--save", default=None, help="write the pictures (uint8 [seeds, N, 64, 64, 3]) to this .npy")
    a = ap.parse_args()
    torch.set_num_threads(1)
    idx = json.load(open(os.path.join(a.model, "model_index.json")))
    meta = idx["_edgediffusion"]
    guidance = meta["prior_guidance_scale"] if a.guidance is None else a.guidance
    scale = json.load(open(os.path.join(a.model, "vqgan", "config.json")))["scale_factor"]
    entries = json.load(open(os.path.join(a.model, "evaluation", "heldout.json")))["captions"][:a.limit]
    tok = data.Tokenizer()
    if a.backend == "onnx":
        fns = onnx_fns(a.model)
    else:
        from train import load_state
        fns = load_state(a.state)
    t0 = time.time()
    totals, per_seed = evaluate(fns, entries, tok, range(a.seeds), scale, guidance, meta["prior_steps"], meta["decoder_steps"])
    print(json.dumps({"model": a.model, "backend": a.backend, "seeds": a.seeds, "guidance": guidance,
                      "pictures": a.seeds * len(entries), "seconds": round(time.time() - t0, 1),
                      **{k: round(100 * v, 1) for k, v in totals.items()},
                      "shape_per_seed": [round(100 * res["shape"], 1) for res, _, _ in per_seed],
                      "shape_by_kind": shape_by_kind(per_seed, entries)}, indent=1))
    if a.save:
        np.save(a.save, np.stack([p[1] for p in per_seed]))
    if a.png:
        write_png(a.png, grid(np.concatenate([p[1] for p in per_seed])))


if __name__ == "__main__":
    main()
