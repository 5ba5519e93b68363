"""Fine-tune the VAE decoder of an exported tiny-shapes folder, encoder frozen, and re-export vae_decoder only.

The encoder (so the latent space and its scaling_factor) stays as shipped, so the folder's UNet keeps working with the
new decoder. Both VAE halves are read from the folder's ONNX files (initializers mapped onto models.py's modules) and
the loaded decoder is checked against the shipped ONNX graph, run by a small numpy interpreter, before training.

/usr/bin/python3 training/tiny-shapes/train_decoder.py --model models/tiny-shapes --out models/tiny-shapes
/usr/bin/python3 training/tiny-shapes/train_decoder.py --smoke --out /tmp/tiny-shapes-decoder   # a few iterations
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx import numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data  # noqa: E402
from export import export_vae_decoder  # noqa: E402
from models import VAE  # noqa: E402
from train import VAE_CFG, image_gradients, log, lr_at, start_run, to_tensor, vae_heldout_check  # noqa: E402


# ---------------------------------------------------------------- ONNX -> PyTorch weights

def load_onnx_into(module, path, prefix=""):
    """Copies the initializers of an ONNX file exported from `module` back into it. Named parameters map by name
    (prefix: what the export wrapper added, e.g. "enc."); GroupNorm's affine weight and bias, which the exporter
    turns into anonymous Mul/Add constants after InstanceNormalization, map in graph order onto the GroupNorm modules
    in forward (= registration) order. Every parameter must be assigned exactly once, with its shape."""
    graph = onnx.load(path).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    params = dict(module.named_parameters())
    assigned = set()
    for name, value in inits.items():
        if name.startswith(prefix) and name[len(prefix):] in params:
            key = name[len(prefix):]
            assert tuple(params[key].shape) == value.shape, (key, params[key].shape, value.shape)
            with torch.no_grad():
                params[key].copy_(torch.from_numpy(value))
            assigned.add(key)
    named = {n for n in inits if n.startswith(prefix) and n[len(prefix):] in params}
    muls, adds = [], []
    for node in graph.node:  # anonymous per-channel constants, in execution order
        anon = [i for i in node.input if i in inits and i not in named]
        if node.op_type == "Mul" and anon:
            muls.append(anon[0])
        elif node.op_type == "Add" and anon:
            adds.append(anon[0])
    norms = [(n, m) for n, m in module.named_modules() if isinstance(m, nn.GroupNorm)]
    assert len(norms) == len(muls) == len(adds), (len(norms), len(muls), len(adds))
    for (n, m), mul, add in zip(norms, muls, adds):
        w, b = inits[mul].reshape(-1), inits[add].reshape(-1)
        assert w.shape == m.weight.shape and b.shape == m.bias.shape, (n, w.shape, m.weight.shape)
        with torch.no_grad():
            m.weight.copy_(torch.from_numpy(w))
            m.bias.copy_(torch.from_numpy(b))
        assigned |= {n + ".weight", n + ".bias"}
    missing = set(params) - assigned
    assert not missing, f"not in {path}: {sorted(missing)}"


# ---------------------------------------------------------------- numpy reference run of an ONNX graph

def _conv(x, w, b, strides, pads, group):
    assert group == 1
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    x = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    sh, sw = strides
    oh, ow = (x.shape[2] - kh) // sh + 1, (x.shape[3] - kw) // sw + 1
    cols = np.empty((n, c, kh, kw, oh, ow), x.dtype)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j] = x[:, :, i:i + sh * oh:sh, j:j + sw * ow:sw]
    y = np.einsum("nckluv,ockl->nouv", cols.astype(np.float64), w.astype(np.float64))
    return (y + (0 if b is None else b.astype(np.float64)[None, :, None, None])).astype(np.float32)


def run_onnx_numpy(path, feeds):
    """Runs the few ops a tiny-shapes VAE graph uses (float64 accumulation in Conv), independent of torch."""
    graph = onnx.load(path).graph
    env = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    env.update(feeds)
    for node in graph.node:
        a = {x.name: onnx.helper.get_attribute_value(x) for x in node.attribute}
        ins = [env[i] if i else None for i in node.input]
        op = node.op_type
        if op == "Constant":
            out = numpy_helper.to_array(a["value"])
        elif op == "Conv":
            k = ins[1].shape[2:]
            out = _conv(ins[0], ins[1], ins[2] if len(ins) > 2 else None, a.get("strides", [1, 1]),
                        a.get("pads", [0, 0, 0, 0]), a.get("group", 1))
            assert list(a.get("kernel_shape", k)) == list(k) and a.get("dilations", [1, 1]) == [1, 1]
        elif op == "Add":
            out = ins[0] + ins[1]
        elif op == "Mul":
            out = ins[0] * ins[1]
        elif op == "Sigmoid":
            out = (1.0 / (1.0 + np.exp(-ins[0].astype(np.float64)))).astype(np.float32)
        elif op == "Shape":
            out = np.array(ins[0].shape, np.int64)
        elif op == "Slice":
            x, starts, ends = ins[0], ins[1], ins[2]
            axes = ins[3] if len(ins) > 3 and ins[3] is not None else range(len(starts))
            steps = ins[4] if len(ins) > 4 and ins[4] is not None else [1] * len(starts)
            sl = [slice(None)] * x.ndim
            for s, e, ax, st in zip(starts, ends, axes, steps):
                sl[int(ax)] = slice(int(s), int(min(e, np.iinfo(np.int64).max)), int(st))
            out = x[tuple(sl)]
        elif op == "Reshape":
            shape = [ins[0].shape[i] if d == 0 else int(d) for i, d in enumerate(ins[1])]
            out = ins[0].reshape(shape)
        elif op == "InstanceNormalization":
            x = ins[0].astype(np.float64)
            ax = tuple(range(2, x.ndim))
            y = (x - x.mean(axis=ax, keepdims=True)) / np.sqrt(x.var(axis=ax, keepdims=True) + a.get("epsilon", 1e-5))
            sh = (1, -1) + (1,) * (x.ndim - 2)
            out = (y * ins[1].reshape(sh) + ins[2].reshape(sh)).astype(np.float32)
        elif op == "Resize":
            assert a.get("mode", b"nearest") == b"nearest"
            scales = ins[2] if len(ins) > 2 and ins[2] is not None and ins[2].size else None
            if scales is None:
                scales = np.array(ins[3], np.float64) / np.array(ins[0].shape)
            out = ins[0]
            for ax, s in enumerate(scales):
                if s != 1:
                    assert float(s).is_integer(), scales
                    out = np.repeat(out, int(s), axis=ax)
        else:
            raise NotImplementedError(op)
        env[node.output[0]] = out
    return [env[o.name] for o in graph.output]


# ---------------------------------------------------------------- training

def decoder_loss(rec, x, edge_weight, boundary_weight):
    """L1 + MSE per pixel, weighted up (1 + boundary_weight) within one pixel of any edge of the target (the pixels whose
    colour decides the classifier's foreground mask, hence a shape's corners), + edge_weight * L1 of the horizontal and
    vertical pixel differences (sharp edges and corners)."""
    gy, gx = image_gradients(x)
    edge = torch.zeros_like(x[:, :1])
    edge[..., 1:, :] += gy.abs().sum(1, keepdim=True)
    edge[..., :-1, :] += gy.abs().sum(1, keepdim=True)
    edge[..., :, 1:] += gx.abs().sum(1, keepdim=True)
    edge[..., :, :-1] += gx.abs().sum(1, keepdim=True)
    near = F.max_pool2d((edge > 1e-3).float(), 3, stride=1, padding=1)
    w = 1.0 + boundary_weight * near
    err = rec - x
    l1 = (w * err.abs()).mean()
    mse = (w * err.pow(2)).mean()
    ry, rx = image_gradients(rec)
    grad = F.l1_loss(ry, gy) + F.l1_loss(rx, gx)
    return l1 + mse + edge_weight * grad, {"l1": l1.item(), "mse": F.mse_loss(rec, x).item(), "grad": grad.item()}


def redraw(images, fg, bg, fg2, bg2):
    """The pictures drawn with colours (fg, bg) redrawn with (fg2, bg2): a drawing is a linear blend of its two colours,
    so each pixel's blend weight is recovered exactly by projecting it on fg - bg."""
    d = fg - bg
    alpha = np.clip(((images.astype(np.float32) - bg) @ d) / float(d @ d), 0, 1)[..., None]
    return np.clip(np.rint(bg2 * (1 - alpha) + fg2 * alpha), 0, 255).astype(np.uint8)


def recolour(images, items, share, rng):
    """Gives a share of the pictures two uniformly random sRGB colours (at least 80 levels apart, so the shape stays
    visible) in place of their palette pair (`redraw`). The UNet only ever asks for the 8 palette colours, but a decoder
    that has seen only those renders every other colour as the nearest of them (pink as pale purple:
    training/tiny-shapes-pink-lora/check_vae.log), and a LoRA cannot adapt the VAE."""
    out = images.copy()
    chosen = np.flatnonzero(rng.random(len(images)) < share)
    for i in chosen:
        fg, bg = (np.array(data.PALETTE[items[i][k]], np.float32) for k in ("color", "background"))
        while True:
            fg2, bg2 = rng.integers(0, 256, size=(2, 3)).astype(np.float32)
            if np.abs(fg2 - bg2).sum() >= 80:
                break
        out[i] = redraw(images[i], fg, bg, fg2, bg2)
    return out, len(chosen)


@torch.no_grad()
def colour_roundtrip(vae, rng, n=128):
    """Mean absolute error (sRGB levels) of the decoded colours at a large square's centre and at the border, over
    pictures with random colours, and the same for pink (255, 105, 180) shapes and backgrounds."""
    def err(pairs):
        square = data.draw({"shape": "square", "count": 1, "color": "red", "background": "blue", "position": "center", "size": "large"})
        fg0, bg0 = (np.array(data.PALETTE[k], np.float32) for k in ("red", "blue"))
        fg, bg = (np.array([p[j] for p in pairs], np.float32)[:, None, None, :] for j in (0, 1))
        imgs = redraw(square[None], fg0, bg0, fg, bg)  # one square, redrawn in every pair
        rec = vae.decoder(vae.encoder(to_tensor(imgs))[:, :4])
        rec = ((rec.clamp(-1, 1) + 1) * 127.5).permute(0, 2, 3, 1).numpy()
        c = data.IMAGE_SIZE // 2
        return (np.abs(rec[:, c, c] - fg[:, 0, 0]).mean() + np.abs(rec[:, 1, 1] - bg[:, 0, 0]).mean()) / 2
    random_pairs = [tuple(rng.integers(0, 256, size=(2, 3))) for _ in range(n)]
    pink = (255, 105, 180)
    pink_pairs = [(pink, data.PALETTE[c]) for c in data.COLORS] + [(data.PALETTE[c], pink) for c in data.COLORS]
    return err(random_pairs), err(pink_pairs)


@torch.no_grad()
def encode(encoder, images, batch=64):
    return torch.cat([encoder(to_tensor(images[i:i + batch]))[:, :4] for i in range(0, len(images), batch)])


def note_decoder_step(out, steps, batch):
    """Records the fine-tune in model_index.json's _edgediffusion metadata (diffusers ignores keys starting with _)."""
    path = os.path.join(out, "model_index.json")
    if not os.path.exists(path):
        return
    with open(path) as f:
        index = json.load(f)
    meta = index.setdefault("_edgediffusion", {})
    base_note = meta.get("note", "").split(", then the VAE decoder")[0]
    meta["note"] = base_note + ", then the VAE decoder fine-tuned with the encoder frozen"
    base_steps = meta.get("steps", "").split("; vae decoder")[0]
    meta["steps"] = base_steps + f"; vae decoder fine-tuned {steps}x{batch} (train_decoder.py)"
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(index, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/tiny-shapes", help="exported folder to read vae_encoder/vae_decoder from")
    ap.add_argument("--out", default="models/tiny-shapes", help="folder whose vae_decoder/model.onnx is written")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--images", type=int, default=30000)
    ap.add_argument("--iters", type=int, default=6000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--edge-weight", type=float, default=1.0)
    ap.add_argument("--boundary-weight", type=float, default=4.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--time-budget-min", type=float, default=None,
                    help="whole-run wall-clock budget: the schedule ends (lr fully decayed) in time to export by then")
    ap.add_argument("--eval-every", type=int, default=1000)
    ap.add_argument("--recolour-share", type=float, default=0.0,
                    help="share of the training pictures redrawn with two random sRGB colours (a decoder for any colour)")
    ap.add_argument("--smoke", action="store_true", help="512 images, 20 iterations")
    a = ap.parse_args()
    if a.smoke:
        a.images, a.iters, a.eval_every = 512, 20, 10
    run_start = time.time()
    rng = start_run(a)

    vae = VAE(VAE_CFG["channels"]).eval()
    enc_path, dec_path = (os.path.join(a.model, p, "model.onnx") for p in ("vae_encoder", "vae_decoder"))
    load_onnx_into(vae.encoder, enc_path, prefix="enc.")
    load_onnx_into(vae.decoder, dec_path)
    with open(os.path.join(a.model, "vae_decoder", "config.json")) as f:
        latent_size = json.load(f)["sample_size"] // 8

    # the loaded modules against the shipped graphs, run by numpy (no onnxruntime here)
    held = data.make_heldout()["captions"]
    x_held = to_tensor(np.stack([data.draw(e) for e in held]))
    with torch.no_grad():
        z = vae.encoder(x_held[:4])[:, :4]
        rec = vae.decoder(z)
    (z_ref,) = run_onnx_numpy(enc_path, {"sample": x_held[:4].numpy()})
    (rec_ref,) = run_onnx_numpy(dec_path, {"latent_sample": z.numpy()})
    dz, dr = np.abs(z.numpy() - z_ref).max(), np.abs(rec.numpy() - rec_ref).max()
    log(f"loaded from ONNX: max |torch - onnx graph (numpy)| encoder {dz:.2e}, decoder {dr:.2e}")
    assert dz < 1e-4 and dr < 1e-4, "the ONNX weights did not load into models.py's modules"
    mse, acc = vae_heldout_check(vae)
    log(f"shipped VAE on the held-out layouts: MSE {mse:.5f}, shape read right {100 * acc:.1f} %")
    log("shipped VAE colour round trip, mean abs error in levels: random colours %.1f, pink %.1f" % colour_roundtrip(vae, np.random.default_rng(7)))

    t0 = time.time()
    images, items = data.make_dataset(a.images, a.seed)
    if a.recolour_share > 0:
        images, n = recolour(images, items, a.recolour_share, rng)
        log(f"recoloured {n} of {len(images)} pictures with random colour pairs")
    latents = encode(vae.encoder, images)  # the frozen encoder's means (what the UNet is trained to produce)
    log(f"data: {len(images)} images drawn and encoded in {time.time() - t0:.1f} s; latents {tuple(latents.shape)}")

    dec = vae.decoder.train()
    for p in vae.encoder.parameters():
        p.requires_grad_(False)
    opt = torch.optim.AdamW(dec.parameters(), lr=a.lr, weight_decay=0.0)
    start = time.time()
    deadline = None if a.time_budget_min is None else run_start + 60 * a.time_budget_min - 30
    budget = None if deadline is None else deadline - start
    step = 0
    while True:  # progress: iterations, or the time budget where that runs out first (as in train.py)
        progress = step / a.iters
        if budget is not None:
            progress = max(progress, (time.time() - start) / budget)
        if progress >= 1.0:
            break
        for g in opt.param_groups:
            g["lr"] = lr_at(int(progress * a.iters), a.iters, a.lr, 100)
        idx = torch.from_numpy(rng.integers(len(images), size=a.batch))
        x = to_tensor(images[idx.numpy()])
        loss, parts = decoder_loss(dec(latents[idx]), x, a.edge_weight, a.boundary_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(dec.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 100 == 0 or step == 1:
            el = time.time() - start
            log(f"dec {step}/{a.iters} loss {loss.item():.4f} l1 {parts['l1']:.4f} mse {parts['mse']:.5f} grad {parts['grad']:.4f} "
                f"lr {opt.param_groups[0]['lr']:.2e} progress {progress:.3f} ({step / el:.2f} it/s, {el / 60:.1f} min)")
        if step % a.eval_every == 0:
            dec.eval()
            mse, acc = vae_heldout_check(vae)
            dec.train()
            log(f"held-out layouts after {step}: MSE {mse:.5f}, shape read right {100 * acc:.1f} %")
    dec.eval()
    train_time = time.time() - start
    log(f"decoder: {step} iterations of batch {a.batch} in {train_time:.0f} s "
        f"(schedule progress reached 1 {'by iterations' if step >= a.iters else 'by the time budget'})")
    mse, acc = vae_heldout_check(vae)
    log(f"fine-tuned VAE on the held-out layouts: MSE {mse:.5f}, shape read right {100 * acc:.1f} %")
    log("fine-tuned VAE colour round trip, mean abs error in levels: random colours %.1f, pink %.1f" % colour_roundtrip(vae, np.random.default_rng(7)))
    with torch.no_grad():
        x = to_tensor(images[:256])
        log(f"reconstruction MSE on 256 training images: {F.mse_loss(dec(latents[:256]), x).item():.5f}")
    export_vae_decoder(a.out, dec, latent_size)
    note_decoder_step(a.out, step, a.batch)
    log(f"exported {os.path.join(a.out, 'vae_decoder', 'model.onnx')}; total {time.time() - run_start:.0f} s")


if __name__ == "__main__":
    main()
