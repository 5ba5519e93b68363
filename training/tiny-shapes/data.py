"""Procedural tiny-shapes data: palette, layouts, anti-aliased drawing, captions, held-out set, tokenizer.

Everything here is deterministic given a numpy Generator seed.
"""
import json
import os
import re

import numpy as np

IMAGE_SIZE = 64
SUPERSAMPLE = 4  # draw at 4x, then box-filter down: anti-aliased edges

# Well separated sRGB values (smallest pairwise distance: orange-yellow, ~85).
PALETTE = {
    "red": (220, 30, 30),
    "green": (30, 170, 60),
    "blue": (30, 70, 220),
    "yellow": (245, 225, 35),
    "orange": (245, 135, 20),
    "purple": (140, 50, 180),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}
COLORS = list(PALETTE)
SHAPES = ["circle", "square", "triangle"]
SIZES = {"small": 16, "large": 30}  # side of the bounding box in pixels
# Centre of the shape's bounding box (x, y) per named position and size, in pixels of a 64x64 image.
_EDGE = {"small": (16, 48), "large": (18, 46)}


def position_centers(size):
    lo, hi = _EDGE[size]
    mid = IMAGE_SIZE / 2
    return {
        "center": (mid, mid), "top left": (lo, lo), "top right": (hi, lo), "bottom left": (lo, hi),
        "bottom right": (hi, hi), "top": (mid, lo), "bottom": (mid, hi), "left": (lo, mid), "right": (hi, mid),
    }


POSITIONS = list(position_centers("small"))
PAIR_OFFSET = 12  # count 2: two small shapes side by side, centres at x = 32 -/+ 12, y = 32
JITTER = 2  # training positions move up to +-2 px (held-out layouts use the exact centres)

# Held-out (shape, colour, background): for shape k, colour i -> background (i + OFFSETS[k]) % 8.
# 24 of the 168 combinations; every colour and every background is held out exactly once per shape.
HELDOUT_OFFSETS = {"circle": 1, "square": 3, "triangle": 5}
HELDOUT_COMBOS = {(s, c, COLORS[(i + HELDOUT_OFFSETS[s]) % len(COLORS)]) for s in SHAPES for i, c in enumerate(COLORS)}


# ---------------------------------------------------------------- drawing

def _coverage(shape, cx, cy, side, n=IMAGE_SIZE, ss=SUPERSAMPLE):
    """Fraction of each pixel covered by the shape (n x n float32)."""
    coords = (np.arange(n * ss, dtype=np.float32) + 0.5) / ss
    x = coords[None, :]
    y = coords[:, None]
    h = side / 2.0
    if shape == "circle":
        m = (x - cx) ** 2 + (y - cy) ** 2 <= h * h
    elif shape == "square":
        m = (np.abs(x - cx) <= h) & (np.abs(y - cy) <= h)
    elif shape == "triangle":  # isosceles, pointing up, base at the bottom: fill ratio 0.5 of its bounding box
        top, bottom = cy - h, cy + h
        m = (y >= top) & (y <= bottom) & (np.abs(x - cx) <= (y - top) / 2.0)
    else:
        raise ValueError(shape)
    return m.reshape(n, ss, n, ss).mean(axis=(1, 3), dtype=np.float32)


def layout_centers(count, position, size, jitter_xy=(0.0, 0.0)):
    jx, jy = jitter_xy
    if count == 2:
        mid = IMAGE_SIZE / 2
        return [(mid - PAIR_OFFSET + jx, mid + jy), (mid + PAIR_OFFSET + jx, mid + jy)]
    cx, cy = position_centers(size)[position]
    return [(cx + jx, cy + jy)]


def draw(item, jitter_xy=(0.0, 0.0)):
    """item: dict with shape, count, color, background, position, size -> uint8 HxWx3."""
    side = SIZES[item["size"]]
    alpha = np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.float32)
    for cx, cy in layout_centers(item["count"], item["position"], item["size"], jitter_xy):
        alpha = np.maximum(alpha, _coverage(item["shape"], cx, cy, side))
    fg = np.array(PALETTE[item["color"]], np.float32)
    bg = np.array(PALETTE[item["background"]], np.float32)
    img = bg[None, None, :] * (1 - alpha[..., None]) + fg[None, None, :] * alpha[..., None]
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- captions

def _where(position):
    return "in the center" if position == "center" else f"at the {position}"


def full_caption(item):
    """The fully specified caption (used for the held-out set)."""
    s, c, b = item["shape"], item["color"], item["background"]
    if item["count"] == 2:
        return f"two small {c} {s}s on a {b} background"
    return f"a {item['size']} {c} {s} {_where(item['position'])} on a {b} background"


def random_caption(item, rng):
    """A caption from varied templates; some leave out position, size or background."""
    s, c, b, z, p = item["shape"], item["color"], item["background"], item["size"], item["position"]
    if item["count"] == 2:
        templates = [
            f"two {c} {s}s on a {b} background",
            f"two small {c} {s}s on a {b} background",
            f"two {c} {s}s on {b}",
            f"two {c} {s}s",
        ]
    else:
        w = _where(p)
        templates = [
            f"a {z} {c} {s} {w} on a {b} background",
            f"a {z} {c} {s} {w} on a {b} background",
            f"a {c} {s} on a {b} background",
            f"a {z} {c} {s} on a {b} background",
            f"a {c} {s} {w} on a {b} background",
            f"a {z} {c} {s} {w}",
            f"a {c} {s} {w}",
            f"{z} {c} {s} on {b}",
            f"{c} {s} on {b}",
            f"a {c} {s}",
        ]
    return templates[rng.integers(len(templates))]


def random_item(rng):
    """Attributes of one training image; never a held-out (shape, colour, background)."""
    while True:
        shape = SHAPES[rng.integers(3)]
        color = COLORS[rng.integers(8)]
        background = COLORS[rng.integers(8)]
        if background == color or (shape, color, background) in HELDOUT_COMBOS:
            continue
        count = 2 if rng.random() < 0.15 else 1
        size = "small" if count == 2 else ("small", "large")[rng.integers(2)]
        position = "center" if count == 2 else POSITIONS[rng.integers(len(POSITIONS))]
        return {"shape": shape, "count": count, "color": color, "background": background, "position": position, "size": size}


def make_dataset(n, seed):
    """n training images (uint8 [n,64,64,3]) and their attribute dicts."""
    rng = np.random.default_rng(seed)
    items, images = [], np.empty((n, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    for i in range(n):
        item = random_item(rng)
        jitter = tuple(rng.uniform(-JITTER, JITTER, 2))
        images[i] = draw(item, jitter)
        items.append(item)
    return images, items


def make_heldout(seed=1234):
    """3 captions per held-out combination (72): two single shapes at random position/size, one pair."""
    rng = np.random.default_rng(seed)
    entries = []
    for shape, color, background in sorted(HELDOUT_COMBOS, key=lambda t: (SHAPES.index(t[0]), COLORS.index(t[1]))):
        for k in range(3):
            if k == 2:
                item = {"shape": shape, "count": 2, "color": color, "background": background, "position": "center", "size": "small"}
            else:
                item = {"shape": shape, "count": 1, "color": color, "background": background,
                        "position": POSITIONS[rng.integers(len(POSITIONS))], "size": ("small", "large")[k]}
            entries.append({
                "caption": full_caption(item), "shape": item["shape"], "count": item["count"],
                "color": color, "color_rgb": list(PALETTE[color]),
                "background": background, "background_rgb": list(PALETTE[background]),
                "position": item["position"], "size": item["size"],
            })
    return {
        "image_size": IMAGE_SIZE,
        "palette": {k: list(v) for k, v in PALETTE.items()},
        "sizes_px": SIZES,
        "position_centers_px": {z: {p: list(xy) for p, xy in position_centers(z).items()} for z in SIZES},
        "pair_layout": f"count 2: two small shapes side by side, centres ({IMAGE_SIZE // 2 - PAIR_OFFSET}, {IMAGE_SIZE // 2}) and ({IMAGE_SIZE // 2 + PAIR_OFFSET}, {IMAGE_SIZE // 2}); position 'center'",
        "heldout_rule": "(shape, colour, background) with background = COLORS[(index(colour) + offset[shape]) % 8], colour order as in palette",
        "heldout_offsets": HELDOUT_OFFSETS,
        "captions": entries,
    }


# ---------------------------------------------------------------- tokenizer (CLIP vocab.json + merges.txt format)

def bytes_to_unicode():
    """GPT-2/CLIP byte -> printable unicode character table, in CLIP's vocabulary order."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1)) + list(range(ord("\u00ae"), ord("\u00ff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def caption_words():
    words = {"a", "on", "the", "at", "in", "background", "two", "center"}
    words |= set(COLORS) | set(SHAPES) | {s + "s" for s in SHAPES} | set(SIZES)
    for p in POSITIONS:
        words |= set(p.split())
    return sorted(words)


def learn_merges(words):
    """Plain BPE learning on the word list until every word is one symbol (ties: lexicographic)."""
    b2u = bytes_to_unicode()
    seqs = {}
    for w in words:
        syms = [b2u[b] for b in w.encode("utf-8")]
        syms[-1] += "</w>"
        seqs[w] = syms
    merges = []
    while True:
        counts = {}
        for syms in seqs.values():
            for a, b in zip(syms, syms[1:]):
                counts[(a, b)] = counts.get((a, b), 0) + 1
        if not counts:
            return merges
        best = min(counts, key=lambda k: (-counts[k], k))
        merges.append(best)
        for w, syms in seqs.items():
            out, i = [], 0
            while i < len(syms):
                if i + 1 < len(syms) and (syms[i], syms[i + 1]) == best:
                    out.append(syms[i] + syms[i + 1])
                    i += 2
                else:
                    out.append(syms[i])
                    i += 1
            seqs[w] = out


class Tokenizer:
    """CLIP-style byte-level BPE with a tiny vocabulary; ids as our C# ClipTokenizer gives them."""
    BOS, EOS = "<|startoftext|>", "<|endoftext|>"

    def __init__(self, max_length=77):
        b2u = bytes_to_unicode()
        symbols = list(b2u.values())
        vocab = symbols + [s + "</w>" for s in symbols]
        self.merges = learn_merges(caption_words())
        vocab += [a + b for a, b in self.merges]
        vocab += [self.BOS, self.EOS]
        self.vocab = {t: i for i, t in enumerate(vocab)}
        assert len(self.vocab) == len(vocab)
        self.ranks = {m: r for r, m in enumerate(self.merges)}
        self.b2u = b2u
        self.max_length = max_length
        self.bos_id, self.eos_id = self.vocab[self.BOS], self.vocab[self.EOS]
        self.pad_id = self.eos_id
        self._cache = {}

    def _bpe(self, word):
        if word in self._cache:
            return self._cache[word]
        syms = [self.b2u[b] for b in word.encode("utf-8")]
        syms[-1] += "</w>"
        while len(syms) > 1:
            pairs = [(self.ranks.get((a, b), 1 << 30), i) for i, (a, b) in enumerate(zip(syms, syms[1:]))]
            rank, _ = min(pairs)
            if rank == 1 << 30:
                break
            a, b = self.merges[rank]
            out, i = [], 0
            while i < len(syms):
                if i + 1 < len(syms) and syms[i] == a and syms[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(syms[i])
                    i += 1
            syms = out
        ids = [self.vocab[s] for s in syms]
        self._cache[word] = ids
        return ids

    def encode(self, text):
        """Captions here are lower-case letters and spaces; CLIP's split reduces to whitespace words for them."""
        text = " ".join(text.strip().lower().split())
        ids = [self.bos_id]
        for word in re.findall(r"[a-z]+|[0-9]|[^\sa-z0-9]+", text):
            ids += self._bpe(word)
        ids = ids[: self.max_length - 1] + [self.eos_id]
        return ids + [self.pad_id] * (self.max_length - len(ids))

    def save(self, folder):
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "vocab.json"), "w", encoding="utf-8") as f:
            json.dump(self.vocab, f, ensure_ascii=False)
        with open(os.path.join(folder, "merges.txt"), "w", encoding="utf-8") as f:
            f.write("#version: 0.2\n")
            for a, b in self.merges:
                f.write(f"{a} {b}\n")
        config = {
            "add_prefix_space": False, "bos_token": self.BOS, "do_lower_case": True, "eos_token": self.EOS,
            "errors": "replace", "model_max_length": self.max_length, "pad_token": self.EOS,
            "tokenizer_class": "CLIPTokenizer", "unk_token": self.EOS,
        }
        with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
            json.dump(config, f, indent=2)
        with open(os.path.join(folder, "special_tokens_map.json"), "w") as f:
            json.dump({"bos_token": self.BOS, "eos_token": self.EOS, "pad_token": self.EOS, "unk_token": self.EOS}, f, indent=2)


if __name__ == "__main__":
    import sys
    here = os.path.dirname(os.path.abspath(__file__))
    held = make_heldout()
    out = os.path.join(here, "heldout.json")
    with open(out, "w") as f:
        json.dump(held, f, indent=1)
    tok = Tokenizer()
    for w in caption_words():
        assert len(tok._bpe(w)) == 1, w
    print(len(held["captions"]), "held-out captions ->", out, "; vocab", len(tok.vocab), "merges", len(tok.merges))
    for e in held["captions"][:3]:
        print(e["caption"], tok.encode(e["caption"])[:14])
    if len(sys.argv) > 1:
        imgs, items = make_dataset(int(sys.argv[1]), 0)
        print(imgs.shape, items[:2])
