"""docs/images/controlnet-heldout.png: held-out masks (top of each pair) and what the C# pipeline drew in them (below),
from the pictures `EdgeDiffusion.Bench controlnet --save` writes to .bench/controlnet (48 masks x 2 seeds, mask-major).

/usr/bin/python3 training/tiny-shapes-controlnet/figure.py
"""
import json
import os

from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
EVAL = os.path.join(ROOT, "models", "tiny-shapes-controlnet", "evaluation")


def main(saved=os.path.join(ROOT, ".bench", "controlnet"), out=os.path.join(ROOT, "docs", "images", "controlnet-heldout.png"), seeds=2, columns=16):
    masks = json.load(open(os.path.join(EVAL, "heldout-masks.json")))["masks"]
    picks = list(range(0, len(masks), len(masks) // columns))[:columns]
    pad = 2
    sheet = Image.new("RGB", (columns * (64 + pad) + pad, 2 * (64 + pad) + pad), (128, 128, 128))
    for c, i in enumerate(picks):
        mask = Image.open(os.path.join(EVAL, masks[i]["mask"])).convert("RGB")
        drawn = Image.open(os.path.join(saved, f"{i * seeds:03d}.png")).convert("RGB")
        x = pad + c * (64 + pad)
        sheet.paste(mask, (x, pad))
        sheet.paste(drawn, (x, 2 * pad + 64))
    sheet = sheet.resize((sheet.width * 2, sheet.height * 2), Image.NEAREST)
    sheet.save(out)
    print(out, [masks[i]["caption"] for i in picks])


if __name__ == "__main__":
    main()
