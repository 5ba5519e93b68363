"""Checks an exported tiny-cascade folder: onnx.checker on every model.onnx, then each graph run by onnx_numpy.py (a numpy
interpreter, independent of torch) on one small input (batch 2) against the PyTorch modules of state.pt.

/usr/bin/python3 training/tiny-cascade/check_onnx.py --model models/tiny-cascade [--state training/tiny-cascade/state.pt] [--reexport]

--reexport first rewrites the folder's ONNX files and configs from state.pt with the current models.py / export.py
(same weights; model_index.json's note and steps are kept).
"""
import argparse
import json
import os
import sys

import numpy as np
import onnx
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.append(os.path.join(HERE, "..", "tiny-shapes"))
import data  # noqa: E402
import train  # noqa: E402
from export import IO, example_inputs, export_folder, text_io  # noqa: E402
from models import PaellaVQ  # noqa: E402
from onnx_numpy import run_onnx  # noqa: E402


def load(path, vocab):
    st = torch.load(path)
    text, effnet, decoder, prior = train.make_modules(st["vocab"])
    vq = PaellaVQ(train.VQ["levels"], train.VQ["latent_channels"], train.VQ["bottleneck_blocks"])
    for m, k in ((text, "text"), (effnet, "effnet"), (decoder, "decoder"), (prior, "prior"), (vq, "vq")):
        m.load_state_dict(st[k])
        m.eval()
    return st, text, effnet, decoder, prior, vq


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/tiny-cascade")
    ap.add_argument("--state", default=os.path.join(HERE, "state.pt"))
    ap.add_argument("--reexport", action="store_true")
    ap.add_argument("--tolerance", type=float, default=1e-4)
    a = ap.parse_args()
    torch.set_num_threads(1)
    tok = data.Tokenizer()
    st, text, effnet, decoder, prior, vq = load(a.state, len(tok.vocab))
    prior, decoder = train.stage(prior, st.get("param", "eps")), train.stage(decoder, st.get("param", "eps"))
    if a.reexport:
        meta = json.load(open(os.path.join(a.model, "model_index.json")))["_edgediffusion"]
        info = {k: meta[k] for k in ("seed", "steps", "note") if k in meta}
        export_folder(a.model, tok, text, prior, decoder, vq, st["scale_factor"], train.TEXT, train.VQ, train.CLIP_IMG,
                      train.EFFNET_SIZE, info)
        print("re-exported", a.model)
    pcfg = prior.unet.cfg if hasattr(prior, "unet") else prior.cfg
    dcfg = decoder.unet.cfg if hasattr(decoder, "unet") else decoder.cfg
    ex = example_inputs(pcfg, dcfg, train.TEXT, train.EFFNET_SIZE, 16, tok.pad_id)
    # a real caption for the text encoder
    ex["text_encoder"] = (torch.tensor([tok.encode("a small red circle at the top left on a blue background"), tok.encode("")], dtype=torch.int32),)
    mods = {"text_encoder": lambda ids: text(ids), "prior_prior": lambda *x: prior(*x),
            "decoder": lambda s, r, p, e: decoder(s, r, p, effnet=e), "vqgan": lambda z: vq.decoder(z)}
    io = dict(IO, text_encoder=text_io(train.TEXT["layers"]))
    worst = 0.0
    report = {}
    for name in ("text_encoder", "prior_text_encoder", "prior_prior", "decoder", "vqgan"):
        key = "text_encoder" if name == "prior_text_encoder" else name
        path = os.path.join(a.model, name, "model.onnx")
        m = onnx.load(path)
        onnx.checker.check_model(m, full_check=True)
        ins, outs = io[key]
        assert [i.name for i in m.graph.input] == ins and [o.name for o in m.graph.output] == outs, (name, m.graph.input, m.graph.output)
        with torch.no_grad():
            ref = mods[key](*ex[key])
        ref = ref if isinstance(ref, tuple) else (ref,)
        got = run_onnx(m, {n: t.numpy() for n, t in zip(ins, ex[key])})
        diffs = {o: float(np.abs(got[o] - r.numpy()).max()) for o, r in zip(outs, ref)}
        scale = {o: float(np.abs(r.numpy()).max()) for o, r in zip(outs, ref)}
        worst = max(worst, *diffs.values())
        report[name] = {"bytes": os.path.getsize(path), "params": sum(int(np.prod(i.dims)) for i in m.graph.initializer),
                        "inputs": {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in m.graph.input},
                        "outputs": {o.name: [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim] for o in m.graph.output},
                        "max_abs_diff": diffs, "max_abs_value": scale}
        print(name, json.dumps(report[name]), flush=True)
    print(f"worst max |onnx - torch| {worst:.2e} (tolerance {a.tolerance})")
    if worst > a.tolerance:
        sys.exit(1)


if __name__ == "__main__":
    main()
