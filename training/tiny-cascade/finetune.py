"""Staged fine-tuning of a trained tiny-cascade state.pt: the text encoder, then the prior, then Stage B, each alone.

/usr/bin/python3 training/tiny-cascade/finetune.py --resume STATE --out DIR --state DIR/state.pt --threads 2 --time-budget-min 50

Why (diagnosis of the attribute-head run, README "Tried 2026-12-07"): its compressor carries every attribute and its
prior produces shape and colour, but
- the text encoder does not keep the background word apart from the rest of the caption: a ridge probe fitted on
  training captions reads the held-out captions' background 0 % from the pooled embedding (34.7 % from the hidden
  states), so the prior, which reads the caption only through them, draws a background seen with that shape and colour;
- Stage B does not render the compressor's shape code even from the true latents (37.5 %).
1. Text: linear classifiers of the caption's attributes (each with an "absent" class for what a caption leaves out) on
   the pooled embedding train the text encoder alone, as the effnet head made the picture latents readable on held-out
   combinations. (Training it together with the prior, the clipped joint gradient left the background at 48 % after
   500 iterations: finetune_text_with_prior_stopped.log; alone it reads 100 % after 300.)
2. Prior: train.train_prior on fixed targets (the frozen compressor's latents of every training picture), text frozen.
3. Stage B alone on fixed targets (Stage A's latents; the compressor's latents + Gaussian noise, so it tolerates the
   prior's imperfect ones; the frozen text encoder's pooled embedding).
The prior and Stage B keep an EMA (0.998); Stage A and the compressor are the resumed state's.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import train  # noqa: E402
from train import data, ev, log  # noqa: E402
from models import PaellaVQ  # noqa: E402

# Caption attributes read by the text head; the last class of each is "absent" (the caption leaves it out).
TEXT_ATTRIBUTES = {"shape": data.SHAPES, "count": ["1", "2"], "color": data.COLORS, "background": data.COLORS,
                   "position": data.POSITIONS, "size": list(data.SIZES)}


def caption_attributes(caption):
    """Class index per attribute of what the caption says (len(values) where it says nothing of it)."""
    words = caption.split()
    said = {}
    for w in words:
        if w.rstrip("s") in data.SHAPES:
            said["shape"] = w.rstrip("s")
        if w in data.SIZES:
            said["size"] = w
    colours = [w for w in words if w in data.COLORS]
    if colours:
        said["color"] = colours[0]
    if " on " in f" {caption} ":
        after = caption.split(" on ", 1)[1].split()
        said["background"] = next(w for w in after if w in data.COLORS)
    if words:
        said["count"] = "2" if words[0] == "two" else "1"
    if "in the center" in caption:
        said["position"] = "center"
    elif "at the " in caption:
        rest = caption.split("at the ", 1)[1].split(" on ")[0]
        said["position"] = rest
    return {k: (v.index(said[k]) if k in said else len(v)) for k, v in TEXT_ATTRIBUTES.items()}


class TextAttributeHead(torch.nn.Module):
    def __init__(self, width):
        super().__init__()
        self.heads = torch.nn.ModuleDict({k: torch.nn.Linear(width, len(v) + 1) for k, v in TEXT_ATTRIBUTES.items()})

    def forward(self, pooled):
        return {k: h(pooled) for k, h in self.heads.items()}


def ridge_probe(xtr, ytr, xte, yte):
    """Accuracy of a ridge-regression classifier fitted on (xtr, ytr), read on xte."""
    labels = sorted(set(ytr))
    y = np.array([[float(v == l) for l in labels] for v in ytr])
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
    a = np.hstack([(xtr - mu) / sd, np.ones((len(xtr), 1))])
    b = np.hstack([(xte - mu) / sd, np.ones((len(xte), 1))])
    w = np.linalg.solve(a.T @ a + np.eye(a.shape[1]), a.T @ y)
    return float(np.mean([labels[i] == v for i, v in zip((b @ w).argmax(1), yte)]))


@torch.no_grad()
def text_probe(text, tokenizer, items, rng):
    """Held-out captions' attributes read from the pooled embedding by probes fitted on training captions (%)."""
    train_items = items[:3000]
    caps = [data.random_caption(it, rng) for it in train_items]
    held = data.make_heldout()["captions"]
    enc = lambda cs: text(torch.tensor([tokenizer.encode(c) for c in cs], dtype=torch.int32))[0].numpy()  # noqa: E731
    ptr, pte = enc(caps), enc([h["caption"] for h in held])
    return {k: round(100 * ridge_probe(ptr, [it[k] for it in train_items], pte, [h[k] for h in held]), 1)
            for k in ("background", "color", "shape")}


def train_text(text, items, tokenizer, iters, batch, rng, lr, length=20):
    """The text encoder alone with the caption-attribute head on its pooled embedding (cross-entropy only). Captions are at
    most 14 tokens and attention is causal, so the first `length` positions give exactly the full sequence's pooled
    embedding at a quarter of the cost. Trains `text` in place."""
    head = TextAttributeHead(train.TEXT["projection_dim"])
    params = list(text.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    start = time.time()
    log(f"text stage: {iters} x {batch}, caption-attribute head on the pooled embedding, lr {lr}")
    for step in range(iters):
        for g in opt.param_groups:
            g["lr"] = train.lr_at(step, iters, lr, 50)
        idx = rng.integers(len(items), size=batch)
        caps = ["" if rng.random() < 0.1 else data.random_caption(items[i], rng) for i in idx]
        ids = [tokenizer.encode(c) for c in caps]
        assert all(i[length - 1] == tokenizer.pad_id for i in ids), "a caption longer than the truncated sequence"
        pooled = text(torch.tensor([i[:length] for i in ids], dtype=torch.int32))[0]
        labels = [caption_attributes(c) for c in caps]
        logits = head(pooled)
        targets = {k: torch.tensor([l[k] for l in labels]) for k in logits}
        loss = sum(F.cross_entropy(z, targets[k]) for k, z in logits.items()) / len(logits)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if step % 100 == 0 or step == iters - 1:
            acc = {k: (z.argmax(1) == targets[k]).float().mean().item() for k, z in logits.items()}
            log(f"text {step}/{iters} loss {loss.item():.4f} lr {opt.param_groups[0]['lr']:.2e} ({(step + 1) / (time.time() - start):.2f} it/s); "
                "head accuracy " + " ".join(f"{k} {100 * v:.0f} %" for k, v in acc.items()))
    log(f"text: {iters} iterations done ({time.time() - start:.1f} s)")
    return text.eval()


def train_decoder(decoder, text, tokenizer, items, targets, latents, iters, batch, rng, lr, deadline, floor, effnet_noise,
                  pixels=None, vq=None, scale_factor=1.0, pixel_weight=0.0, text_drop=0.1, hard_weight=1.0):
    """Stage B alone on fixed targets (train.train_alone); returns its EMA copy and the iterations. pixel_weight > 0 adds
    the picture loss of the predicted x0 decoded by the frozen Stage A (the latent MSE weighs every latent value alike,
    while the shape is decided by a few values at its edges)."""
    log(f"Stage B stage: up to {iters} x {batch}, fixed targets, effnet noise {effnet_noise}, loss floor {floor}, pixel weight {pixel_weight}, "
        f"text drop {text_drop}, small-corner weight {hard_weight}")
    # Small and paired triangles and squares (corners a few latent pixels wide) drawn hard_weight times as often: Stage B
    # rounded their corners into blobs that read as circles, on training captions as on held-out ones.
    hard = np.array([it["shape"] != "circle" and (it["size"] == "small" or it["count"] == 2) for it in items])
    p = np.where(hard, hard_weight, 1.0)
    p = p / p.sum()

    def batch_loss():
        idx = rng.choice(len(targets), size=batch, p=p)
        sel = torch.from_numpy(idx)
        # the frozen text encoder's pooled embedding of a random caption, the empty caption's for a share text_drop (0.1 as in
        # the joint stage; more makes Stage B read the layout from effnet rather than recall it from the caption)
        caps = ["" if rng.random() < text_drop else data.random_caption(items[i], rng) for i in idx]
        with torch.no_grad():
            pooled = text(torch.tensor([tokenizer.encode(c) for c in caps], dtype=torch.int32))[0]
        e = targets[sel]
        e = e + effnet_noise * torch.randn_like(e)
        pixel_loss = None
        if pixel_weight > 0:
            x = train.to01(pixels[idx])
            pixel_loss = lambda pred: pixel_weight * train.picture_loss(vq.decoder(pred * scale_factor), x)  # noqa: E731
        return train.diffusion_loss(decoder, latents[sel], rng, "x0", floor, pixel_loss, clip_text_pooled=pooled[:, None], effnet=e)

    ema, _, steps = train.train_alone(decoder, batch_loss, iters, rng, lr, deadline, "decoder")
    return ema, steps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--resume", required=True, help="state.pt of a train.py run (its Stage A and compressor are kept)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--state", required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--images", type=int, default=12000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--time-budget-min", type=float, default=55)
    ap.add_argument("--text-iters", type=int, default=800)
    ap.add_argument("--text-batch", type=int, default=256)
    ap.add_argument("--text-lr", type=float, default=1e-3)
    ap.add_argument("--prior-share", type=float, default=0.4, help="share of the budget (after the text stage) for the prior stage")
    ap.add_argument("--prior-iters", type=int, default=4000)
    ap.add_argument("--prior-batch", type=int, default=128)
    ap.add_argument("--prior-lr", type=float, default=5e-4)
    ap.add_argument("--prior-floor", type=float, default=1.0)
    ap.add_argument("--decoder-iters", type=int, default=8000)
    ap.add_argument("--decoder-batch", type=int, default=32)
    ap.add_argument("--decoder-lr", type=float, default=5e-4)
    ap.add_argument("--decoder-floor", type=float, default=0.1)
    ap.add_argument("--effnet-noise", type=float, default=0.1)
    ap.add_argument("--decoder-text-drop", type=float, default=0.1,
                    help="share of Stage B's samples conditioned on the empty caption's pooled embedding")
    ap.add_argument("--decoder-hard-weight", type=float, default=1.0,
                    help="how much more often Stage B draws small or paired triangles and squares")
    ap.add_argument("--decoder-pixel-weight", type=float, default=0.0, help="weight of Stage B's picture loss through the frozen Stage A (0: latents only)")
    ap.add_argument("--stages", default="text,prior,decoder", help="which stages run, in this order (a comma-separated subset; 'none': export only)")
    ap.add_argument("--decoder-from", default=None, help="Stage B from this state.pt (same text encoder and compressor as --resume)")
    ap.add_argument("--note", default=None,
                    help="model_index.json's note for the final export (which runs' logs the weights come from; default: the stages run)")
    ap.add_argument("--smoke", action="store_true")
    a = ap.parse_args()
    if a.smoke:
        a.images, a.text_iters, a.prior_iters, a.decoder_iters, a.prior_batch = 512, 10, 10, 10, 16
    run_start = time.time()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    log(f"args {vars(a)}; torch {torch.__version__}, {torch.get_num_threads()} threads")

    st = torch.load(a.resume)
    assert st.get("param") == "x0" and st.get("effnet_input", "rgb") == "rgb", "finetune.py continues x0 / rgb-effnet runs"
    text, effnet, decoder, prior = train.make_modules(st["vocab"])
    vq = PaellaVQ(train.VQ["levels"], train.VQ["latent_channels"], train.VQ["bottleneck_blocks"])
    for m, k in ((text, "text"), (effnet, "effnet"), (decoder, "decoder"), (prior, "prior"), (vq, "vq")):
        m.load_state_dict(st[k])
    if a.decoder_from:  # two stages trained side by side from the same state (each 1 thread), joined here
        other = torch.load(a.decoder_from)
        assert all(torch.equal(other["text"][k], v) for k, v in st["text"].items()), "--decoder-from: another text encoder"
        assert all(torch.equal(other["effnet"][k], v) for k, v in st["effnet"].items()), "--decoder-from: another compressor"
        decoder.load_state_dict(other["decoder"])
        log(f"Stage B taken from {a.decoder_from}")
    effnet.eval()
    vq.eval()
    for p in vq.parameters():  # frozen: Stage B's picture loss only passes through it
        p.requires_grad_(False)
    scale_factor = st["scale_factor"]
    tokenizer = data.Tokenizer()
    t0 = time.time()
    images, items = data.make_dataset(a.images, a.seed)
    masks = train.coverage(images, items)
    latents = train.encode_all(vq.encoder, images) / scale_factor  # the state's Stage A is already centred
    targets = train.effnet_all(effnet, images, masks)
    log(f"data + Stage A latents {tuple(latents.shape)} (std {latents.std():.3f}) + effnet targets {tuple(targets.shape)} ({time.time() - t0:.1f} s)")
    held = data.make_heldout()["captions"]
    modules = {"text": text.eval(), "effnet": effnet, "decoder": decoder.eval(), "prior": prior.eval()}

    def export_and_eval(label):
        from export import export_folder  # noqa: E402
        info = {"seed": str(a.seed), "steps": "finetune.py (recipes, commands, logs: training/tiny-cascade/README.md)", "note": label, "param": "x0"}
        export_folder(a.out, tokenizer, modules["text"], train.stage(modules["prior"], "x0"), train.stage(modules["decoder"], "x0"), vq,
                      scale_factor, train.TEXT, train.VQ, train.CLIP_IMG, train.EFFNET_SIZE, info)
        torch.save({"vocab": st["vocab"], "scale_factor": scale_factor, "param": "x0", "effnet_input": "rgb",
                    **{k: m.state_dict() for k, m in modules.items()}, "vq": vq.state_dict()}, a.state)
        t1 = time.time()
        fns = ev.torch_fns(modules["text"], train.stage(modules["prior"], "x0"), train.stage(modules["decoder"], "x0"), vq.decoder,
                           train.CLIP_IMG, train.EFFNET_SIZE)
        entries = held[:12] if a.smoke else held
        totals, _ = ev.evaluate(fns, entries, tokenizer, (0,), scale_factor)
        log(f"eval {label} (held-out, seed 0, {len(entries)} pictures, {time.time() - t1:.1f} s): "
            + json.dumps({k: round(100 * v, 1) for k, v in totals.items()}))
        log(f"text probe {label} (pooled, held-out captions): " + json.dumps(text_probe(modules["text"], tokenizer, items, np.random.default_rng(7))))

    export_and_eval("resumed state")
    deadline = run_start + 60 * a.time_budget_min - 60
    stages, done = a.stages.split(","), ([f"Stage B of {a.decoder_from}"] if a.decoder_from else [])
    if "text" in stages:
        modules["text"] = train_text(text.train(), items, tokenizer, a.text_iters, a.text_batch, rng, a.text_lr)
        log("text probe after the text stage (pooled, held-out captions): " + json.dumps(text_probe(modules["text"], tokenizer, items, np.random.default_rng(7))))
        done.append(f"text {a.text_iters} x {a.text_batch}")
    for p in modules["text"].parameters():
        p.requires_grad_(False)
    if "prior" in stages:
        prior_deadline = deadline if "decoder" not in stages else time.time() + a.prior_share * (deadline - time.time())
        modules["prior"], _, psteps = train.train_prior(prior.train(), modules["text"], targets, items, tokenizer, a.prior_iters, a.prior_batch,
                                                        rng, a.prior_lr, prior_deadline, floor=a.prior_floor)
        done.append(f"prior {psteps} x {a.prior_batch}")
        if "decoder" in stages:
            export_and_eval("after " + ", ".join(done))
    if "decoder" in stages:
        modules["decoder"], dsteps = train_decoder(decoder.train(), modules["text"], tokenizer, items, targets, latents, a.decoder_iters,
                                                   a.decoder_batch, rng, a.decoder_lr, deadline, a.decoder_floor, a.effnet_noise,
                                                   images, vq, scale_factor, a.decoder_pixel_weight, a.decoder_text_drop,
                                                   a.decoder_hard_weight)
        done.append(f"Stage B {dsteps} x {a.decoder_batch}")
    export_and_eval(a.note if a.note is not None else "final: " + ", ".join(done))
    log(f"done in {(time.time() - run_start) / 60:.1f} min -> {a.out}")


if __name__ == "__main__":
    main()
