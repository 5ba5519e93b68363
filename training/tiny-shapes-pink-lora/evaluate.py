"""Evaluate the pink LoRA: merged into the shipped model (torch modules loaded from the ONNX files), 20 Euler steps at
guidance 3, colours read as bench/EdgeDiffusion.Bench/Shapes/ShapeClassifier.cs does with pink added to the palette.

/usr/bin/python3 training/tiny-shapes-pink-lora/evaluate.py [--lora models/loras/tiny-shapes-pink.safetensors]

Checks the file's format (kohya keys, shapes, metadata), that every key's module path is in the ONNX graphs, that
merging into the ONNX weights (numpy graph run) gives what the merged torch model gives, then measures:
- held-out pink captions (36 captions x 2 seeds, pink combinations never drawn in training): pink drawn;
- models/tiny-shapes/evaluation/heldout.json (72 captions) with and without the LoRA: colours, shapes, PSNR between them.
Writes evaluation.json and samples.png next to this file.
"""
import argparse
import copy
import json
import os
import sys
import time

import numpy as np
import onnx
import torch
from onnx import numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from common import data  # noqa: E402


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def check_format(tensors, meta, text, unet):
    assert meta.get("ss_network_module") == "networks.lora" and meta.get("trigger_word") == "pink", meta
    rank, alpha = int(meta["ss_network_dim"]), float(meta["ss_network_alpha"])
    targets = {"te": common.onnx_weight_targets(os.path.join(common.MODEL, "text_encoder", "model.onnx")),
               "unet": common.onnx_weight_targets(os.path.join(common.MODEL, "unet", "model.onnx"))}
    idx = {"te": common.underscore_index(text), "unet": common.underscore_index(unet)}
    mods = {"te": dict(text.named_modules()), "unet": dict(unet.named_modules())}
    stems = sorted({k.split(".")[0] for k in tensors})
    for stem in stems:
        assert set(k for k in tensors if k.split(".")[0] == stem) == {stem + s for s in (".lora_down.weight", ".lora_up.weight", ".alpha")}, stem
        which, u = common.module_for_key(stem)
        p = idx[which][u]
        w = mods[which][p].weight
        d, up, al = tensors[stem + ".lora_down.weight"], tensors[stem + ".lora_up.weight"], tensors[stem + ".alpha"]
        assert al.shape == () and float(al) == alpha and d.shape[0] == rank and up.shape[1] == rank
        assert d.shape[1] == w.shape[1] and up.shape[0] == w.shape[0] and d.shape[2:] == w.shape[2:], stem
        assert up.dim() == 2 or up.shape[2:] == (1, 1)
        assert p in targets[which], (stem, p)
    return len(stems), rank, alpha


def merge_check_onnx(tensors, text_m, unet_m, tok):
    """Merge the LoRA into copies of the ONNX weights as the C# side does (MatMul weight [in, out]: += its transpose;
    Conv weight [out, in, kh, kw] and Gemm(transB) [out, in]: += delta) and compare with the merged torch modules."""
    res = {}
    for which, sub, model in (("te", "text_encoder", text_m), ("unet", "unet", unet_m)):
        path = os.path.join(common.MODEL, sub, "model.onnx")
        g = onnx.load(path).graph
        inits = {i.name: numpy_helper.to_array(i).copy() for i in g.initializer}
        by_path = {}
        for n in g.node:
            if n.op_type in ("MatMul", "Gemm", "Conv") and len(n.input) > 1 and n.input[1] in inits:
                by_path[common.module_path(n.name)] = (n.op_type, n.input[1])
        idx = common.underscore_index(model)
        for stem in sorted({k.split(".")[0] for k in tensors if common.module_for_key(k)[0] == which}):
            op, name = by_path[idx[common.module_for_key(stem)[1]]]
            d, up, al = (tensors[stem + s].numpy().astype(np.float64) for s in (".lora_down.weight", ".lora_up.weight", ".alpha"))
            r = d.shape[0]
            delta = (al / r) * (up.reshape(up.shape[0], r) @ d.reshape(r, -1))
            w = inits[name]
            inits[name] = (w + (delta.T if op == "MatMul" else delta.reshape(w.shape))).astype(np.float32)
        res[which] = (path, inits)
    ids = torch.tensor([tok.encode("a large pink circle at the top left on a green background")], dtype=torch.int32)

    def run(path, inits, feeds):
        m = onnx.load(path)
        for i in m.graph.initializer:
            i.CopyFrom(numpy_helper.from_array(inits[i.name], i.name))
        tmp = "/tmp/pink-lora-merged.onnx"
        onnx.save(m, tmp)
        return common.run_onnx(tmp, feeds)[0]

    te_ref = run(*res["te"], {"input_ids": ids.numpy()})
    with torch.no_grad():
        te = text_m(ids).numpy()
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    t = torch.tensor([500], dtype=torch.int64)
    u_ref = run(*res["unet"], {"sample": x.numpy(), "timestep": t.numpy(), "encoder_hidden_states": te_ref})
    with torch.no_grad():
        u = unet_m(x, t, torch.from_numpy(te_ref)).numpy()
    return float(np.abs(te - te_ref).max()), float(np.abs(u - u_ref).max())


def score(images, entries):
    rows = []
    for img, e in zip(images, entries):
        bg, fg, shape = common.classify(img)
        rows.append({"caption": e["caption"], "bg": bg, "fg": fg, "shape": shape,
                     "ok_bg": bg == e["background"], "ok_fg": fg == e["color"], "ok_shape": shape == e["shape"]})
    n = len(rows)
    return rows, {k: sum(r[k] for r in rows) / n for k in ("ok_bg", "ok_fg", "ok_shape")} | {
        "colours_both": sum(r["ok_bg"] and r["ok_fg"] for r in rows) / n, "n": n}


def save_grid(path, rows_of_images):
    from PIL import Image
    h = len(rows_of_images)
    w = max(len(r) for r in rows_of_images)
    canvas = np.full((h * 66, w * 66, 3), 128, np.uint8)
    for i, r in enumerate(rows_of_images):
        for j, img in enumerate(r):
            canvas[i * 66 + 1:i * 66 + 65, j * 66 + 1:j * 66 + 65] = img
    Image.fromarray(canvas).save(path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lora", default=common.LORA_OUT)
    ap.add_argument("--seeds", type=int, default=2, help="seeds per held-out pink caption")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="a few captions only (smoke test of this script)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    t_start = time.time()
    tok = data.Tokenizer()
    text, unet, vae, scale = common.load_base()
    tensors, meta = common.read_safetensors(a.lora)
    n_mod, rank, alpha = check_format(tensors, meta, text, unet)
    log(f"{a.lora}: {len(tensors)} tensors = {n_mod} modules x (lora_down, lora_up, alpha), rank {rank}, alpha {alpha}; "
        f"metadata {meta}; every module path found in the ONNX graphs")
    text_m, unet_m = copy.deepcopy(text), copy.deepcopy(unet)
    common.merge_into(text_m, unet_m, tensors, 1.0)
    d_te, d_un = merge_check_onnx(tensors, text_m, unet_m, tok)
    log(f"merged into the ONNX weights (numpy run) vs merged torch: text encoder max |diff| {d_te:.2e}, UNet {d_un:.2e}")

    pink = common.pink_heldout()
    base_held = json.load(open(os.path.join(common.MODEL, "evaluation", "heldout.json")))["captions"]
    if a.quick:
        pink, base_held = pink[::9], base_held[::18]
    pink_e = [e for e in pink for _ in range(a.seeds)]
    pink_seeds = [7000 + i for i in range(len(pink_e))]
    base_seeds = [1000 + i for i in range(len(base_held))]
    caps_p, caps_b = [e["caption"] for e in pink_e], [e["caption"] for e in base_held]

    img_pl = common.generate(text_m, unet_m, vae, scale, tok, caps_p, pink_seeds)
    log(f"generated {len(img_pl)} held-out pink pictures with the LoRA")
    img_p0 = common.generate(text, unet, vae, scale, tok, caps_p, pink_seeds)
    img_bl = common.generate(text_m, unet_m, vae, scale, tok, caps_b, base_seeds)
    img_b0 = common.generate(text, unet, vae, scale, tok, caps_b, base_seeds)
    log("generated the base pictures and the held-out base captions with and without the LoRA")

    def pink_rate(images):
        rows, s = score(images, pink_e)
        drawn = [(r["fg"] == "pink") if e["color"] == "pink" else (r["bg"] == "pink") for r, e in zip(rows, pink_e)]
        for r, d in zip(rows, drawn):
            r["pink_drawn"] = d
        fg_cases = [d for d, e in zip(drawn, pink_e) if e["color"] == "pink"]
        bg_cases = [d for d, e in zip(drawn, pink_e) if e["background"] == "pink"]
        return rows, {"pink_drawn": sum(drawn) / len(drawn), "pink_shape": sum(fg_cases) / len(fg_cases),
                      "pink_background": sum(bg_cases) / len(bg_cases), **s}

    rows_pl, s_pl = pink_rate(img_pl)
    _, s_p0 = pink_rate(img_p0)
    rows_bl, s_bl = score(img_bl, base_held)
    _, s_b0 = score(img_b0, base_held)
    ps = [common.psnr(x, y) for x, y in zip(img_bl, img_b0)]
    finite = [p for p in ps if np.isfinite(p)]
    res = {
        "lora": os.path.relpath(a.lora, common.ROOT), "modules": n_mod, "rank": rank, "alpha": alpha,
        "merge_check_max_abs_diff": {"text_encoder": d_te, "unet": d_un},
        "sampler": "Euler (EulerDiscreteScheduler, linspace), 20 steps, guidance 3, 64x64, noise torch.Generator(seed)",
        "pink_heldout_with_lora": s_pl, "pink_heldout_base_model": s_p0,
        "base_heldout_with_lora": s_bl, "base_heldout_base_model": s_b0,
        "psnr_base_captions_lora_vs_none_db": {"mean": float(np.mean(finite)) if finite else None, "median": float(np.median(ps)),
                                               "min": float(np.min(ps)), "identical": len(ps) - len(finite), "n": len(ps)},
        "pink_misses": [r for r in rows_pl if not r["pink_drawn"]],
        "base_colour_misses_with_lora": [r for r in rows_bl if not (r["ok_bg"] and r["ok_fg"])],
        "seconds": round(time.time() - t_start, 1),
    }
    out = os.path.join(common.HERE, "evaluation.json" if not a.quick else "/tmp/pink-eval-quick.json")
    with open(out, "w") as f:
        json.dump(res, f, indent=1)
    log(f"held-out pink captions ({s_pl['n']} pictures): pink drawn {100 * s_pl['pink_drawn']:.1f} % "
        f"(pink shape {100 * s_pl['pink_shape']:.1f} %, pink background {100 * s_pl['pink_background']:.1f} %); "
        f"both colours {100 * s_pl['colours_both']:.1f} %, shape {100 * s_pl['ok_shape']:.1f} % | base model: pink drawn {100 * s_p0['pink_drawn']:.1f} %")
    log(f"held-out base captions ({s_bl['n']}) with LoRA: background {100 * s_bl['ok_bg']:.1f} %, colour {100 * s_bl['ok_fg']:.1f} %, "
        f"both {100 * s_bl['colours_both']:.1f} %, shape {100 * s_bl['ok_shape']:.1f} % | without: background {100 * s_b0['ok_bg']:.1f} %, "
        f"colour {100 * s_b0['ok_fg']:.1f} %, both {100 * s_b0['colours_both']:.1f} %, shape {100 * s_b0['ok_shape']:.1f} %")
    log(f"PSNR base captions with vs without LoRA: {res['psnr_base_captions_lora_vs_none_db']}")
    if not a.quick:
        k = len(pink_e) // 2
        save_grid(os.path.join(common.HERE, "samples.png"),
                  [list(img_p0[:k:2]), list(img_pl[:k:2]), list(img_p0[k::2]), list(img_pl[k::2]), list(img_b0[::4]), list(img_bl[::4])])
    log(f"-> {out} ({res['seconds']} s)")


if __name__ == "__main__":
    main()
