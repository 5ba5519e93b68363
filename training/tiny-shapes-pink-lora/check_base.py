"""Checks before training: pink's token ids (data.py's tokenizer vs the shipped tokenizer files), the shipped text encoder
and UNet loaded from ONNX into models.py reproduce the ONNX graphs (numpy interpreter) on one input, and every LoRA
target's module path is found in the ONNX graphs.

/usr/bin/python3 training/tiny-shapes-pink-lora/check_base.py
"""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from common import data  # noqa: E402

torch.set_num_threads(1)


def main():
    tok = data.Tokenizer()
    inv = {v: k for k, v in tok.vocab.items()}
    ids = tok._bpe("pink")
    print("pink ->", ids, [inv[i] for i in ids], "(pink in caption_words:", "pink" in data.caption_words(), ")")
    for cap in ["a pink circle", "a small pink square at the top left on a blue background", "a red triangle on a pink background", ""]:
        a = tok.encode(cap)
        b = common.bpe_from_files(os.path.join(common.MODEL, "tokenizer"), cap)
        b = b + [tok.pad_id] * (77 - len(b))
        assert a == b, (cap, a[:16], b[:16])
        print(f"  {cap!r}: {a[:a.index(tok.eos_id) + 1]}  (tokenizer files give the same)")

    text, unet, vae, scale = common.load_base()
    print("loaded; scaling_factor", scale)
    g = torch.Generator().manual_seed(0)
    ids = torch.tensor([tok.encode("a small pink square at the top left on a blue background")], dtype=torch.int32)
    with torch.no_grad():
        te = text(ids).numpy()
    te_ref = common.run_onnx(os.path.join(common.MODEL, "text_encoder", "model.onnx"), {"input_ids": ids.numpy()})[0]
    print(f"text encoder torch vs ONNX (numpy): max |diff| {np.abs(te - te_ref).max():.2e} (max |value| {np.abs(te_ref).max():.2f})")
    x = torch.randn(2, 4, 8, 8, generator=g)
    t = torch.tensor([999, 321], dtype=torch.int64)
    ctx = torch.from_numpy(np.concatenate([te_ref, te_ref[:, ::-1].copy()]))
    with torch.no_grad():
        u = unet(x, t, ctx).numpy()
    u_ref = common.run_onnx(os.path.join(common.MODEL, "unet", "model.onnx"),
                            {"sample": x.numpy(), "timestep": t.numpy(), "encoder_hidden_states": ctx.numpy()})[0]
    print(f"UNet torch vs ONNX (numpy): max |diff| {np.abs(u - u_ref).max():.2e} (max |value| {np.abs(u_ref).max():.2f})")
    assert np.abs(te - te_ref).max() < 1e-3 and np.abs(u - u_ref).max() < 1e-3

    for name, model, targets, onnx_path in (("te", text, common.te_targets(text), "text_encoder"),
                                            ("unet", unet, common.unet_targets(unet), "unet")):
        found = common.onnx_weight_targets(os.path.join(common.MODEL, onnx_path, "model.onnx"))
        for p in targets:
            assert p in found, (name, p)
            print(f"  lora_{name}_{p.replace('.', '_')}  <-  {p}  <-  {found[p]}")
        print(f"{name}: {len(targets)} LoRA targets, all found in {onnx_path}/model.onnx")


if __name__ == "__main__":
    main()
