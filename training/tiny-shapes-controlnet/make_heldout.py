"""Writes models/tiny-shapes-controlnet/evaluation/: heldout-masks.json and the 48 held-out mask PNGs (64x64 greyscale,
255 where the shape goes, 0 elsewhere) that the C# picture gate and bench read.

/usr/bin/python3 training/tiny-shapes-controlnet/make_heldout.py
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import controlnet as cn  # noqa: E402
from controlnet import data  # noqa: E402


def main(out=os.path.join(cn.OUT, "evaluation")):
    os.makedirs(os.path.join(out, "masks"), exist_ok=True)
    entries = []
    for i, e in enumerate(cn.heldout_masks()):
        name = f"masks/{i:02d}-{e['shape']}.png"
        cn.write_png_gray(os.path.join(out, name), cn.draw_item(e)[1])
        entries.append(dict(e, mask=name))
    doc = {
        "image_size": data.IMAGE_SIZE,
        "palette": {k: list(v) for k, v in data.PALETTE.items()},
        "rule": "every held-out (shape, colour, background) of tiny-shapes twice: first in a corner (centre as near a canvas "
                "corner as its size allows), then at an off-grid place (centre >= 6 px from every named position); side "
                f"{cn.MIN_SIDE}-{cn.MAX_SIDE} px; mask = drawn coverage >= 0.5",
        "masks": entries,
    }
    with open(os.path.join(out, "heldout-masks.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(len(entries), "masks ->", out)


if __name__ == "__main__":
    main()
