"""Shared pieces of the tiny-shapes "pink" LoRA recipe: the pink palette extension, the shipped model loaded from its
ONNX files into models.py's modules, a numpy ONNX interpreter to check that load, LoRA adapters (kohya layout), the
kohya safetensors writer/reader, the Euler sampler and the colour classifier of bench/.../ShapeClassifier.cs."""
import json
import math
import os
import re
import struct
import sys

import numpy as np
import onnx
import torch
import torch.nn as nn
from onnx import numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "training", "tiny-shapes"))
import data  # noqa: E402
from models import VAE, TextEncoder, UNet  # noqa: E402
from train_decoder import _conv, load_onnx_into  # noqa: E402

MODEL = os.path.join(ROOT, "models", "tiny-shapes")
LORA_OUT = os.path.join(ROOT, "models", "loras", "tiny-shapes-pink.safetensors")
T = 1000

# ---------------------------------------------------------------- pink (this recipe only; data.py is not edited)

PINK = (255, 105, 180)
data.PALETTE["pink"] = PINK  # data.COLORS (the 8 base colours, used by data.random_item) is left as it is
BASE_COLORS = list(data.COLORS)
PALETTE9 = dict(data.PALETTE)

# Held-out pink combinations (never drawn in training): pink shape on these backgrounds, these colours on pink.
PINK_FG_HELDOUT = {("circle", "red"), ("circle", "blue"), ("square", "green"), ("square", "white"),
                   ("triangle", "yellow"), ("triangle", "black")}
PINK_BG_HELDOUT = {("circle", "green"), ("circle", "orange"), ("square", "purple"), ("square", "red"),
                   ("triangle", "blue"), ("triangle", "white")}


def pink_item(rng):
    """A training item with pink as the shape colour (half) or the background (half), never a held-out pink combo."""
    while True:
        shape = data.SHAPES[rng.integers(3)]
        other = BASE_COLORS[rng.integers(8)]
        if rng.random() < 0.5:
            color, background = "pink", other
            if (shape, other) in PINK_FG_HELDOUT:
                continue
        else:
            color, background = other, "pink"
            if (shape, other) in PINK_BG_HELDOUT:
                continue
        count = 2 if rng.random() < 0.15 else 1
        size = "small" if count == 2 else ("small", "large")[rng.integers(2)]
        position = "center" if count == 2 else data.POSITIONS[rng.integers(len(data.POSITIONS))]
        return {"shape": shape, "count": count, "color": color, "background": background, "position": position, "size": size}


def pink_heldout(seed=4321):
    """3 captions (small, large at a random position, a pair) per held-out pink combination: 36 captions."""
    rng = np.random.default_rng(seed)
    combos = sorted([(s, "pink", b) for s, b in PINK_FG_HELDOUT] + [(s, c, "pink") for s, c in PINK_BG_HELDOUT],
                    key=lambda t: (data.SHAPES.index(t[0]), t[1], t[2]))
    out = []
    for shape, color, background in combos:
        for k in range(3):
            if k == 2:
                item = {"shape": shape, "count": 2, "color": color, "background": background, "position": "center", "size": "small"}
            else:
                item = {"shape": shape, "count": 1, "color": color, "background": background,
                        "position": data.POSITIONS[rng.integers(len(data.POSITIONS))], "size": ("small", "large")[k]}
            item["caption"] = data.full_caption(item)
            out.append(item)
    return out


# ---------------------------------------------------------------- tokenizer files (what the C# ClipTokenizer reads)

def bpe_from_files(folder, text):
    """Independent CLIP BPE from vocab.json + merges.txt (as the C# tokenizer reads them)."""
    vocab = json.load(open(os.path.join(folder, "vocab.json"), encoding="utf-8"))
    merges = [tuple(l.split(" ")) for l in open(os.path.join(folder, "merges.txt"), encoding="utf-8").read().splitlines()[1:] if l]
    ranks = {m: i for i, m in enumerate(merges)}
    b2u = data.bytes_to_unicode()
    ids = [vocab["<|startoftext|>"]]
    for w in re.findall(r"[a-z]+|[0-9]|[^\sa-z0-9]+", " ".join(text.lower().split())):
        syms = [b2u[b] for b in w.encode()]
        syms[-1] += "</w>"
        while len(syms) > 1:
            best = min(((ranks.get(p, 1 << 30), i) for i, p in enumerate(zip(syms, syms[1:]))))
            if best[0] == 1 << 30:
                break
            i = best[1]
            syms = syms[:i] + [syms[i] + syms[i + 1]] + syms[i + 2:]
        ids += [vocab[s] for s in syms]
    return ids + [vocab["<|endoftext|>"]]


# ---------------------------------------------------------------- ONNX -> torch (text encoder, UNet)

def module_path(node_name):
    """ONNX node name '/seg1/seg2/.../Op' -> torch module path: segments joined by '.', a segment 'x.N' that extends
    the previous segment 'x' (nn.Sequential / ModuleList children) replaces it: '/layers.0/mlp/mlp.0/MatMul' ->
    'layers.0.mlp.0'."""
    parts = []
    for seg in node_name.strip("/").split("/")[:-1]:
        if parts and seg.startswith(parts[-1] + "."):
            parts[-1] = seg
        else:
            parts.append(seg)
    return ".".join(parts)


def onnx_weight_targets(path):
    """{torch module path: how the ONNX graph holds its weight} for every MatMul/Gemm/Conv with a constant weight."""
    g = onnx.load(path).graph
    inits = {i.name for i in g.initializer}
    out = {}
    for n in g.node:
        if n.op_type in ("MatMul", "Gemm", "Conv") and len(n.input) > 1 and n.input[1] in inits:
            p = module_path(n.name)
            named = n.input[1] == p + ".weight"
            out[p] = (f"initializer {n.input[1]}" if named else f"node {n.name} (weight {n.input[1]})")
    return out


def load_graph_into(module, path):
    """Named initializers by name; anonymous MatMul weights by the node's module path (transposed: ONNX [in, out]);
    GroupNorm affine from the anonymous Mul/Add after each InstanceNormalization ('/P/norm/Mul', '/P/norm/Add');
    the text encoder's pos (folded into the first Add). Every parameter assigned exactly once."""
    g = onnx.load(path).graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    params = dict(module.named_parameters())
    assigned = {}

    def put(key, value, src):
        assert key in params, (key, src)
        assert key not in assigned, (key, src, assigned.get(key))
        assert tuple(params[key].shape) == value.shape, (key, tuple(params[key].shape), value.shape)
        with torch.no_grad():
            params[key].copy_(torch.from_numpy(np.array(value, copy=True)))
        assigned[key] = src

    for name, v in inits.items():
        if name in params:
            put(name, v, name)
    norms = {n for n, m in module.named_modules() if isinstance(m, nn.GroupNorm)}
    for n in g.node:
        anon = [i for i in n.input if i in inits and i not in params]
        if not anon:
            continue
        p = module_path(n.name)
        if n.op_type == "MatMul":
            put(p + ".weight", inits[anon[0]].T, n.name)
        elif p in norms and n.op_type == "Mul" and n.name.endswith("/Mul"):
            put(p + ".weight", inits[anon[0]].reshape(-1), n.name)
        elif p in norms and n.op_type == "Add" and n.name.endswith("/Add"):
            put(p + ".bias", inits[anon[0]].reshape(-1), n.name)
        elif n.op_type == "Add" and "pos" in params and "pos" not in assigned and inits[anon[0]].shape[-2:] == tuple(params["pos"].shape):
            put("pos", inits[anon[0]].reshape(params["pos"].shape), n.name)
    missing = set(params) - set(assigned)
    assert not missing, f"not found in {path}: {sorted(missing)}"
    return assigned


def load_base(model=MODEL):
    """The shipped text encoder, UNet and VAE as torch modules (eval, float32), and the scaling factor."""
    cfg_t = json.load(open(os.path.join(model, "text_encoder", "config.json")))
    cfg_u = json.load(open(os.path.join(model, "unet", "config.json")))
    cfg_v = json.load(open(os.path.join(model, "vae_decoder", "config.json")))
    text = TextEncoder(cfg_t["vocab_size"], cfg_t["hidden_size"], cfg_t["num_hidden_layers"], cfg_t["num_attention_heads"])
    unet = UNet(tuple(cfg_u["block_out_channels"]), cfg_u["cross_attention_dim"], coords=True, zero_init=False)
    vae = VAE(tuple(cfg_v["block_out_channels"]))
    load_graph_into(text, os.path.join(model, "text_encoder", "model.onnx"))
    load_graph_into(unet, os.path.join(model, "unet", "model.onnx"))
    load_onnx_into(vae.encoder, os.path.join(model, "vae_encoder", "model.onnx"), prefix="enc.")
    load_onnx_into(vae.decoder, os.path.join(model, "vae_decoder", "model.onnx"))
    for m in (text, unet, vae):
        m.eval()
        for p in m.parameters():
            p.requires_grad_(False)
    return text, unet, vae, float(cfg_v["scaling_factor"])


# ---------------------------------------------------------------- numpy ONNX interpreter (no onnx.reference in onnx 1.12)

_erf = np.vectorize(math.erf, otypes=[np.float64])
_NP = {1: np.float32, 6: np.int32, 7: np.int64, 9: np.bool_, 11: np.float64}


def run_onnx(path, feeds):
    """Runs the ops the tiny-shapes text encoder / UNet graphs use, in float64 where it matters, independent of torch."""
    g = onnx.load(path).graph
    env = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    env.update(feeds)
    for node in g.node:
        a = {x.name: onnx.helper.get_attribute_value(x) for x in node.attribute}
        x = [env[i] if i else None for i in node.input]
        op = node.op_type
        if op == "Constant":
            y = numpy_helper.to_array(a["value"])
        elif op == "Conv":
            y = _conv(x[0], x[1], x[2] if len(x) > 2 else None, a.get("strides", [1, 1]), a.get("pads", [0, 0, 0, 0]), a.get("group", 1))
        elif op == "Add":
            y = x[0] + x[1]
        elif op == "Sub":
            y = x[0] - x[1]
        elif op == "Mul":
            y = x[0] * x[1]
        elif op == "Div":
            y = (x[0] // x[1]) if np.issubdtype(x[0].dtype, np.integer) else x[0] / x[1]
        elif op == "Reciprocal":
            y = (1.0 / x[0]).astype(x[0].dtype)
        elif op == "MatMul":
            y = np.matmul(x[0].astype(np.float64), x[1].astype(np.float64)).astype(np.float32)
        elif op == "Gemm":
            b = x[1].T if a.get("transB", 0) else x[1]
            aa = x[0].T if a.get("transA", 0) else x[0]
            y = (a.get("alpha", 1.0) * (aa.astype(np.float64) @ b) + a.get("beta", 1.0) * (x[2] if len(x) > 2 else 0)).astype(np.float32)
        elif op == "Sigmoid":
            y = (1 / (1 + np.exp(-x[0].astype(np.float64)))).astype(np.float32)
        elif op == "Erf":
            y = _erf(x[0]).astype(np.float32)
        elif op in ("Cos", "Sin"):
            y = getattr(np, op.lower())(x[0])
        elif op == "Softmax":
            z = x[0].astype(np.float64)
            z = np.exp(z - z.max(axis=a.get("axis", -1), keepdims=True))
            y = (z / z.sum(axis=a.get("axis", -1), keepdims=True)).astype(np.float32)
        elif op == "LayerNormalization":
            ax = a.get("axis", -1)
            z = x[0].astype(np.float64)
            axes = tuple(range(ax % z.ndim, z.ndim))
            z = (z - z.mean(axis=axes, keepdims=True)) / np.sqrt(z.var(axis=axes, keepdims=True) + a.get("epsilon", 1e-5))
            y = (z * x[1] + (x[2] if len(x) > 2 else 0)).astype(np.float32)
        elif op == "InstanceNormalization":
            z = x[0].astype(np.float64)
            ax = tuple(range(2, z.ndim))
            z = (z - z.mean(axis=ax, keepdims=True)) / np.sqrt(z.var(axis=ax, keepdims=True) + a.get("epsilon", 1e-5))
            sh = (1, -1) + (1,) * (z.ndim - 2)
            y = (z * x[1].reshape(sh) + x[2].reshape(sh)).astype(np.float32)
        elif op == "Shape":
            y = np.array(x[0].shape, np.int64)
        elif op == "Gather":
            y = np.take(x[0], x[1].astype(np.int64), axis=a.get("axis", 0))
        elif op == "Unsqueeze":
            y = x[0]
            for ax in sorted(int(v) % (x[0].ndim + len(x[1])) for v in x[1]):
                y = np.expand_dims(y, ax)
        elif op == "Concat":
            y = np.concatenate(x, axis=a["axis"])
        elif op == "Reshape":
            shape = [x[0].shape[i] if d == 0 else int(d) for i, d in enumerate(x[1])]
            y = x[0].reshape(shape)
        elif op == "Transpose":
            y = np.transpose(x[0], a["perm"])
        elif op == "Cast":
            y = x[0].astype(_NP[a["to"]])
        elif op == "Slice":
            sl = [slice(None)] * x[0].ndim
            axes = x[3] if len(x) > 3 and x[3] is not None else range(len(x[1]))
            steps = x[4] if len(x) > 4 and x[4] is not None else [1] * len(x[1])
            for s, e, ax, st in zip(x[1], x[2], axes, steps):
                sl[int(ax)] = slice(int(s), int(min(e, np.iinfo(np.int64).max)), int(st))
            y = x[0][tuple(sl)]
        elif op == "ConstantOfShape":
            v = numpy_helper.to_array(a["value"]) if "value" in a else np.zeros(1, np.float32)
            y = np.full(tuple(int(d) for d in x[0]), v.reshape(-1)[0], v.dtype)
        elif op == "Equal":
            y = x[0] == x[1]
        elif op == "Where":
            y = np.where(x[0], x[1], x[2])
        elif op == "Expand":
            y = x[0] * np.ones(tuple(int(d) for d in x[1]), x[0].dtype)
        elif op == "Range":
            y = np.arange(x[0], x[1], x[2]).astype(x[0].dtype)
        elif op == "Resize":
            scales = x[2] if len(x) > 2 and x[2] is not None and x[2].size else np.array(x[3], np.float64) / np.array(x[0].shape)
            y = x[0]
            for ax, s in enumerate(scales):
                if s != 1:
                    y = np.repeat(y, int(s), axis=ax)
        else:
            raise NotImplementedError(op)
        env[node.output[0]] = y
    return [env[o.name] for o in g.output]


# ---------------------------------------------------------------- LoRA (kohya networks.lora layout)

def te_targets(text):
    return [n for n, m in text.named_modules() if isinstance(m, nn.Linear)]  # layers.i.attn.{q,k,v,out}, layers.i.mlp.{0,2}


def unet_targets(unet):
    out = []
    for n, m in unet.named_modules():
        if isinstance(m, nn.Linear) and re.search(r"\.attn[12]\.(q|k|v|out)$", n):
            out.append(n)
        elif isinstance(m, nn.Conv2d) and re.search(r"_attn(\.\d)?\.proj_(in|out)$", n):
            out.append(n)
    return out


class LoRA(nn.Module):
    """down: Linear(in, r) or Conv(in, r, k) like the base; up: zero-initialised Linear(r, out) or 1x1 Conv(r, out).
    Added to the base module's output with scale alpha / r (forward hook, so module paths stay as in the base)."""
    def __init__(self, base, rank, alpha):
        super().__init__()
        self.scale = alpha / rank
        if isinstance(base, nn.Linear):
            self.down = nn.Linear(base.in_features, rank, bias=False)
            self.up = nn.Linear(rank, base.out_features, bias=False)
        else:
            self.down = nn.Conv2d(base.in_channels, rank, base.kernel_size, base.stride, base.padding, bias=False)
            self.up = nn.Conv2d(rank, base.out_channels, 1, bias=False)
        nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
        nn.init.zeros_(self.up.weight)
        self.multiplier = 1.0

    def forward(self, x):
        return self.up(self.down(x)) * (self.scale * self.multiplier)


def attach(model, targets, rank, alpha):
    mods = dict(model.named_modules())
    loras = nn.ModuleDict()
    for p in targets:
        lora = LoRA(mods[p], rank, alpha)
        loras[p.replace(".", "_")] = lora
        mods[p].register_forward_hook(lambda m, inp, out, lora=lora: out + lora(inp[0]))
    return loras


def kohya_tensors(te_loras, unet_loras, alpha):
    out = {}
    for prefix, loras in (("lora_te", te_loras), ("lora_unet", unet_loras)):
        for k, l in loras.items():
            out[f"{prefix}_{k}.lora_down.weight"] = l.down.weight.detach().float().contiguous()
            out[f"{prefix}_{k}.lora_up.weight"] = l.up.weight.detach().float().contiguous()
            out[f"{prefix}_{k}.alpha"] = torch.tensor(float(alpha), dtype=torch.float32)
    return out


def write_safetensors(path, tensors, metadata):
    header = {"__metadata__": {k: str(v) for k, v in metadata.items()}}
    blobs, off = [], 0
    for name in sorted(tensors):
        b = tensors[name].contiguous().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensors[name].shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)  # pad the header to 8 bytes (allowed by the format: trailing spaces)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def read_safetensors(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    base = 8 + n
    out = {}
    for k, v in header.items():
        assert v["dtype"] == "F32"
        b, e = v["data_offsets"]
        out[k] = torch.from_numpy(np.frombuffer(raw[base + b:base + e], "<f4").copy().reshape(v["shape"]))
    return out, meta


def module_for_key(key):
    """'lora_unet_down0_attn_attn2_k.lora_up.weight' -> ('unet', 'down0_attn_attn2_k') (underscored module path)."""
    stem = key.split(".")[0]
    return ("te", stem[len("lora_te_"):]) if stem.startswith("lora_te_") else ("unet", stem[len("lora_unet_"):])


def underscore_index(model):
    """underscored path -> dotted path for every module of model (kohya keys lose the dots)."""
    idx = {}
    for n, _ in model.named_modules():
        if n:
            u = n.replace(".", "_")
            assert u not in idx, ("ambiguous", u, n, idx[u])
            idx[u] = n
    return idx


@torch.no_grad()
def merge_into(text, unet, tensors, multiplier=1.0):
    """W += multiplier * (alpha / rank) * up @ down, W in PyTorch layout [out, in] (conv: [out, in, kh, kw])."""
    idx = {"te": underscore_index(text), "unet": underscore_index(unet)}
    mods = {"te": dict(text.named_modules()), "unet": dict(unet.named_modules())}
    stems = sorted({k.split(".")[0] for k in tensors})
    for stem in stems:
        which, u = module_for_key(stem)
        m = mods[which][idx[which][u]]
        down, up, alpha = tensors[stem + ".lora_down.weight"], tensors[stem + ".lora_up.weight"], float(tensors[stem + ".alpha"])
        rank = down.shape[0]
        if down.dim() == 4:
            delta = (up.reshape(up.shape[0], rank) @ down.reshape(rank, -1)).reshape(m.weight.shape)
        else:
            delta = up @ down
        m.weight += multiplier * (alpha / rank) * delta
    return len(stems)


# ---------------------------------------------------------------- sampling (Euler, as the C# EulerDiscreteScheduler, linspace)

def euler_sigmas(steps):
    betas = np.linspace(0.00085 ** 0.5, 0.012 ** 0.5, T, dtype=np.float64) ** 2
    abar = np.cumprod(1 - betas)
    sig = np.sqrt((1 - abar) / abar)
    ts = np.linspace(0, T - 1, steps)[::-1].copy()
    s = np.interp(ts, np.arange(T), sig)
    return ts, np.append(s, 0.0)


@torch.no_grad()
def generate(text, unet, vae, scale, tokenizer, captions, seeds, steps=20, guidance=3.0, batch=36):
    """uint8 [n, 64, 64, 3]; noise per picture from torch.Generator(seed) (same noise with and without the LoRA)."""
    ts, sig = euler_sigmas(steps)
    out = []
    uncond = text(torch.tensor([tokenizer.encode("")]))
    for i in range(0, len(captions), batch):
        caps, sds = captions[i:i + batch], seeds[i:i + batch]
        n = len(caps)
        cond = text(torch.tensor([tokenizer.encode(c) for c in caps]))
        ctx = torch.cat([uncond.expand(n, -1, -1), cond])
        x = torch.stack([torch.randn(4, 8, 8, generator=torch.Generator().manual_seed(int(s))) for s in sds]) * float(sig[0])
        for k, t in enumerate(ts):
            s = float(sig[k])
            xin = (x / math.sqrt(s * s + 1)).repeat(2, 1, 1, 1)
            eps = unet(xin, torch.full((2 * n,), float(t)), ctx)
            e_u, e_c = eps[:n], eps[n:]
            e = e_u + guidance * (e_c - e_u)
            x = x + e * (float(sig[k + 1]) - s)
        img = vae.decoder(x / scale)
        out.append(((img.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy())
    return np.concatenate(out)


# ---------------------------------------------------------------- ShapeClassifier.cs (colours only, plus shape by fill)

def classify(img, palette=PALETTE9):
    """(background, foreground colour, shape) as bench/EdgeDiffusion.Bench/Shapes/ShapeClassifier.cs reads them."""
    names = list(palette)
    pal = np.array([palette[k] for k in names], np.int64)
    h, w, _ = img.shape
    px = img.astype(np.int64)
    border = np.concatenate([px[0], px[-1], px[1:-1, 0], px[1:-1, -1]])
    med = np.sort(border, axis=0)[len(border) // 2]
    nearest = lambda p: names[int(((pal - p) ** 2).sum(-1).argmin())]  # noqa: E731
    bg = nearest(med)
    mask = ((px - med) ** 2).sum(-1) > 60 * 60
    if mask.sum() < 4:
        return bg, None, None
    near = ((px[mask][:, None, :] - pal[None]) ** 2).sum(-1).argmin(1)
    votes = {}
    for j in near:
        if names[j] != bg:
            votes[names[j]] = votes.get(names[j], 0) + 1
    if not votes:
        return bg, None, None
    color = max(votes, key=votes.get)  # ties: first counted (C# MaxBy keeps the first maximum too)
    from train import fill_ratio, shape_of  # noqa: E402  (training/tiny-shapes/train.py)
    return bg, color, shape_of(fill_ratio(img, [int(v) for v in med]))


def psnr(a, b):
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean()
    return float("inf") if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)
