"""Where does tiny-cascade lose a caption's attribute? Runs the stages of a trained state.pt in isolation on the held-out set.

/usr/bin/python3 training/tiny-cascade/diagnose.py --state training/tiny-cascade/state.pt [--seeds 1]

1. full pipeline (prior -> decoder -> Stage A), as evaluate.py;
2. decoder fed the TRUE effnet latents of the held-out pictures (drawn exactly) with the caption's pooled text
   (if this reads right, the prior is at fault; if not, Stage B / the effnet compressor is);
3. the same with the EMPTY caption's pooled text (what Stage B reads from effnet alone);
4. true effnet of the same layout with another background, the caption's pooled text (which input B follows);
5. the prior's latents read by a nearest-class-mean probe fitted on true effnet latents of training pictures
   (background / colour / shape / position), and the same probe on the true held-out latents (its ceiling);
   plus the share of the effnet latents' variance each attribute explains.
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.append(os.path.join(HERE, "..", "tiny-shapes"))
import data  # noqa: E402
import evaluate as ev  # noqa: E402
import train  # noqa: E402
from models import PaellaVQ, wuerstchen_step  # noqa: E402


def pct(d):
    return {k: round(100 * v, 1) for k, v in d.items()}


@torch.no_grad()
def decode_with(fns, pooled, effnet, seed, steps=10, scale_factor=1.0):
    g = torch.Generator().manual_seed(seed)
    b = effnet.shape[0]
    z = torch.randn(b, 4, 16, 16, generator=g)
    ts = ev.timesteps(steps)
    for t, tp in zip(ts[:-1], ts[1:]):
        eps = fns["decoder"](z, torch.full((b,), t), pooled, effnet)
        z = ev.wuerstchen_step(eps, t, tp, z, torch.randn(z.shape, generator=g))
    imgs = fns["vqgan"](z * scale_factor).clamp(0, 1)
    return (imgs * 255).round().byte().permute(0, 2, 3, 1).numpy()


@torch.no_grad()
def prior_latents(fns, captions, tok, seed, steps=20, guidance=4.0):
    g = torch.Generator().manual_seed(seed)
    empty = torch.tensor([tok.encode("")], dtype=torch.int32)
    u_pooled, _, u_hidden = fns["text"](empty)
    b = len(captions)
    ids = torch.tensor([tok.encode(c) for c in captions], dtype=torch.int32)
    pooled, _, hidden = fns["text"](ids)
    c_pooled = torch.cat([pooled[:, None], u_pooled[:, None].expand(b, -1, -1)])
    c_hidden = torch.cat([hidden, u_hidden.expand(b, -1, -1)])
    img = torch.zeros(2 * b, 1, fns["clip_img_dim"])
    x = torch.randn(b, 16, 2, 2, generator=g)
    ts = ev.timesteps(steps)
    for t, tp in zip(ts[:-1], ts[1:]):
        eps = fns["prior"](torch.cat([x, x]), torch.full((2 * b,), t), c_pooled, c_hidden, img)
        e_c, e_u = eps.chunk(2)
        eps = e_u + guidance * (e_c - e_u) if guidance > 1 else e_c
        x = wuerstchen_step(eps, t, tp, x, torch.randn(x.shape, generator=g))
    return x, pooled[:, None]


def probe_fit(lat, items, key):
    flat = lat.reshape(len(lat), -1).numpy()
    labels = sorted({it[key] for it in items})
    means = {l: flat[[it[key] == l for it in items]].mean(0) for l in labels}
    return means


def probe_read(means, lat):
    flat = lat.reshape(len(lat), -1).numpy()
    keys = list(means)
    m = np.stack([means[k] for k in keys])
    d = ((flat[:, None] - m[None]) ** 2).sum(-1)
    return [keys[i] for i in d.argmin(1)]


def variance_share(lat, items, key):
    flat = lat.reshape(len(lat), -1).numpy()
    total = ((flat - flat.mean(0)) ** 2).sum()
    between = 0.0
    for l in {it[key] for it in items}:
        sel = flat[[it[key] == l for it in items]]
        between += len(sel) * ((sel.mean(0) - flat.mean(0)) ** 2).sum()
    return between / total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--state", default=os.path.join(HERE, "state.pt"))
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--train-captions", action="store_true", help="also the full pipeline on 72 training layouts")
    a = ap.parse_args()
    torch.set_num_threads(1)
    st = torch.load(a.state)
    text, effnet, decoder, prior = train.make_modules(st["vocab"])
    vq = PaellaVQ(train.VQ["levels"], train.VQ["latent_channels"], train.VQ["bottleneck_blocks"])
    for m, k in ((text, "text"), (effnet, "effnet"), (decoder, "decoder"), (prior, "prior"), (vq, "vq")):
        m.load_state_dict(st[k])
        m.eval()
    param = st.get("param", "eps")
    train.EFFNET_INPUT = st.get("effnet_input", "rgb")
    enc = lambda imgs, its: effnet(train.effnet_input(imgs, train.coverage(imgs, its)))  # noqa: E731
    sf = st["scale_factor"]
    fns = ev.torch_fns(text, train.stage(prior, param), train.stage(decoder, param), vq.decoder, train.CLIP_IMG, 2)
    tok = data.Tokenizer()
    held = data.make_heldout()["captions"]
    caps = [e["caption"] for e in held]
    imgs_true = np.stack([data.draw(e) for e in held])
    out = {}
    with torch.no_grad():
        e_true = enc(imgs_true, held)
        ids = torch.tensor([tok.encode(c) for c in caps], dtype=torch.int32)
        pooled = text(ids)[0][:, None]
        e_pooled = text(torch.tensor([tok.encode("")] * len(caps), dtype=torch.int32))[0][:, None]
        # another background for the same layout: the next palette colour that is neither the shape's nor the true one
        swapped = []
        for e in held:
            i = data.COLORS.index(e["background"])
            for k in range(1, 8):
                c = data.COLORS[(i + k) % 8]
                if c != e["color"]:
                    break
            swapped.append(dict(e, background=c))
        e_swap = enc(np.stack([data.draw(e) for e in swapped]), swapped)
    for s in range(a.seeds):
        out[f"full pipeline s{s}"] = pct(ev.evaluate(fns, held, tok, (s,), sf)[0])
        out[f"B(true effnet, caption pooled) s{s}"] = pct(ev.score(decode_with(fns, pooled, e_true, s, scale_factor=sf), held)[0])
        out[f"B(true effnet, empty pooled) s{s}"] = pct(ev.score(decode_with(fns, e_pooled, e_true, s, scale_factor=sf), held)[0])
        r = ev.score(decode_with(fns, pooled, e_swap, s, scale_factor=sf), held)[1]
        out[f"B(effnet of other bg, caption pooled) s{s}: follows caption / effnet"] = (
            round(100 * np.mean([x["background"] == e["background"] for x, e in zip(r, held)]), 1),
            round(100 * np.mean([x["background"] == e["background"] for x, e in zip(r, swapped)]), 1))
    # probes on the effnet space
    imgs, items = data.make_dataset(4000, 99)
    with torch.no_grad():
        e_train = torch.cat([enc(imgs[i:i + 500], items[i:i + 500]) for i in range(0, len(imgs), 500)])
    singles_tr = [i for i, it in enumerate(items) if it["count"] == 1]
    for s in range(a.seeds):
        e_prior, _ = prior_latents(fns, caps, tok, s)
        for key in ("background", "color", "shape", "position"):
            src_items = items if key != "position" else [items[i] for i in singles_tr]
            src = e_train if key != "position" else e_train[singles_tr]
            means = probe_fit(src, src_items, key)
            sel = range(len(held)) if key != "position" else [i for i, e in enumerate(held) if e["count"] == 1]
            read_true = probe_read(means, e_true[list(sel)])
            read_prior = probe_read(means, e_prior[list(sel)])
            truth = [held[i][key] for i in sel]
            out[f"probe {key} s{s}: true effnet / prior"] = (round(100 * np.mean([a_ == b for a_, b in zip(read_true, truth)]), 1),
                                                            round(100 * np.mean([a_ == b for a_, b in zip(read_prior, truth)]), 1))
        out[f"prior latents stats s{s}"] = {"std": round(float(e_prior.std()), 3), "mean": round(float(e_prior.mean()), 3),
                                          "mse to true": round(float(((e_prior - e_true) ** 2).mean()), 3)}
    for key in ("background", "color", "shape", "size"):
        out[f"variance share of effnet explained by {key}"] = round(float(variance_share(e_train, items, key)), 3)
    if a.train_captions:
        tr = [{"caption": data.full_caption(it), **it} for it in items[:72]]
        out["full pipeline, training combos"] = pct(ev.evaluate(fns, tr, tok, (0,), sf)[0])
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
