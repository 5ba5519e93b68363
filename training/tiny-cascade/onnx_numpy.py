"""A small numpy interpreter for the ONNX ops tiny-cascade's graphs use (onnx 1.12 has no onnx.reference and there is
no Python onnxruntime here). Independent of torch; float64 accumulation in Conv / MatMul / Gemm / normalisations.

run_onnx(model_or_path, feeds) -> {output name: array}
"""
import math

import numpy as np
import onnx
from onnx import numpy_helper

_erf = np.vectorize(math.erf, otypes=[np.float64])


def _attrs(node):
    return {x.name: onnx.helper.get_attribute_value(x) for x in node.attribute}


def _conv(x, w, b, strides, pads, group, dilations):
    assert list(dilations) == [1, 1]
    n, c, _, _ = x.shape
    o, cg, kh, kw = w.shape
    x = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    sh, sw = strides
    oh, ow = (x.shape[2] - kh) // sh + 1, (x.shape[3] - kw) // sw + 1
    cols = np.empty((n, c, kh, kw, oh, ow), np.float64)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j] = x[:, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw]
    og = o // group
    ys = []
    for g in range(group):
        ys.append(np.einsum("nckluv,ockl->nouv", cols[:, g * cg:(g + 1) * cg], w[g * og:(g + 1) * og].astype(np.float64)))
    y = np.concatenate(ys, axis=1)
    if b is not None:
        y = y + b.astype(np.float64)[None, :, None, None]
    return y


def _conv_transpose(x, w, b, strides, pads, group):
    assert group == 1
    n, c, h, wd = x.shape
    _, o, kh, kw = w.shape
    sh, sw = strides
    full = np.zeros((n, o, (h - 1) * sh + kh, (wd - 1) * sw + kw), np.float64)
    x = x.astype(np.float64)
    for i in range(kh):
        for j in range(kw):
            full[:, :, i:i + sh * (h - 1) + 1:sh, j:j + sw * (wd - 1) + 1:sw] += np.einsum("nchw,co->nohw", x, w[:, :, i, j].astype(np.float64))
    y = full[:, :, pads[0]:full.shape[2] - pads[2], pads[1]:full.shape[3] - pads[3]]
    if b is not None:
        y = y + b.astype(np.float64)[None, :, None, None]
    return y


def _resize_linear_align_corners(x, sizes):
    y = x.astype(np.float64)
    for ax in range(x.ndim):
        n_in, n_out = y.shape[ax], int(sizes[ax])
        if n_in == n_out:
            continue
        pos = np.zeros(n_out) if n_out == 1 else np.arange(n_out) * (n_in - 1) / (n_out - 1)
        lo = np.clip(np.floor(pos).astype(int), 0, n_in - 1)
        hi = np.clip(lo + 1, 0, n_in - 1)
        f = pos - lo
        shape = [1] * y.ndim
        shape[ax] = n_out
        f = f.reshape(shape)
        y = np.take(y, lo, axis=ax) * (1 - f) + np.take(y, hi, axis=ax) * f
    return y


def _dtype(t):
    return {1: np.float32, 6: np.int32, 7: np.int64, 9: np.bool_, 11: np.float64}[t]


def run_onnx(model, feeds):
    if isinstance(model, str):
        model = onnx.load(model)
    graph = model.graph
    env = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    env.update({k: np.asarray(v) for k, v in feeds.items()})
    for node in graph.node:
        a = _attrs(node)
        x = [env[i] if i else None for i in node.input]
        op = node.op_type
        if op == "Constant":
            out = numpy_helper.to_array(a["value"])
        elif op == "Identity":
            out = x[0]
        elif op in ("Add", "Sub", "Mul", "Div", "Pow"):
            fn = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide, "Pow": np.power}[op]
            out = fn(x[0], x[1])
            if np.issubdtype(x[0].dtype, np.integer) and op == "Div":
                out = (x[0] // x[1])
            out = out.astype(np.result_type(x[0].dtype, x[1].dtype)) if x[0].dtype == x[1].dtype else out
        elif op == "Clip":
            lo = x[1] if len(x) > 1 and x[1] is not None else -np.inf
            hi = x[2] if len(x) > 2 and x[2] is not None else np.inf
            out = np.clip(x[0], lo, hi)
        elif op == "Abs":
            out = np.abs(x[0])
        elif op == "Sqrt":
            out = np.sqrt(x[0])
        elif op == "Sin":
            out = np.sin(x[0])
        elif op == "Cos":
            out = np.cos(x[0])
        elif op == "Erf":
            out = _erf(x[0]).astype(x[0].dtype)
        elif op == "Sigmoid":
            out = 1.0 / (1.0 + np.exp(-x[0].astype(np.float64)))
        elif op == "Softmax":
            ax = a.get("axis", -1)
            e = np.exp(x[0].astype(np.float64) - x[0].max(axis=ax, keepdims=True))
            out = e / e.sum(axis=ax, keepdims=True)
        elif op == "Shape":
            s = np.array(x[0].shape, np.int64)
            out = s[a.get("start", 0):a.get("end", len(s))]
        elif op == "Gather":
            out = np.take(x[0], x[1].astype(np.int64), axis=a.get("axis", 0))
        elif op == "Unsqueeze":
            out = x[0]
            for ax in sorted(int(v) % (x[0].ndim + len(x[1])) for v in x[1]):
                out = np.expand_dims(out, ax)
        elif op == "Squeeze":
            out = np.squeeze(x[0], axis=tuple(int(v) for v in x[1]))
        elif op == "Concat":
            out = np.concatenate(x, axis=a["axis"])
        elif op == "Reshape":
            shape = [x[0].shape[i] if d == 0 else int(d) for i, d in enumerate(x[1])]
            out = x[0].reshape(shape)
        elif op == "Flatten":
            ax = a.get("axis", 1)
            out = x[0].reshape(int(np.prod(x[0].shape[:ax])), -1)
        elif op == "Transpose":
            out = np.transpose(x[0], a["perm"])
        elif op == "Slice":
            starts, ends = x[1], x[2]
            axes = x[3] if len(x) > 3 and x[3] is not None else range(len(starts))
            steps = x[4] if len(x) > 4 and x[4] is not None else [1] * len(starts)
            sl = [slice(None)] * x[0].ndim
            for s, e, ax, st in zip(starts, ends, axes, steps):
                sl[int(ax)] = slice(int(s), int(max(min(e, 1 << 62), -(1 << 62))), int(st))
            out = x[0][tuple(sl)]
        elif op == "Split":
            ax = a.get("axis", 0)
            sizes = x[1] if len(x) > 1 and x[1] is not None else [x[0].shape[ax] // len(node.output)] * len(node.output)
            idx = np.cumsum(sizes)[:-1]
            outs = np.split(x[0], idx, axis=ax)
            for name, v in zip(node.output, outs):
                env[name] = v
            continue
        elif op == "Cast":
            out = x[0].astype(_dtype(a["to"]))
        elif op == "MatMul":
            out = np.matmul(x[0].astype(np.float64), x[1].astype(np.float64))
        elif op == "Gemm":
            A = x[0].astype(np.float64).T if a.get("transA", 0) else x[0].astype(np.float64)
            B = x[1].astype(np.float64).T if a.get("transB", 0) else x[1].astype(np.float64)
            out = a.get("alpha", 1.0) * A @ B
            if len(x) > 2 and x[2] is not None:
                out = out + a.get("beta", 1.0) * x[2]
        elif op == "LayerNormalization":
            ax = a.get("axis", -1) % x[0].ndim
            axes = tuple(range(ax, x[0].ndim))
            v = x[0].astype(np.float64)
            m = v.mean(axis=axes, keepdims=True)
            out = (v - m) / np.sqrt(((v - m) ** 2).mean(axis=axes, keepdims=True) + a.get("epsilon", 1e-5))
            out = out * x[1]
            if len(x) > 2 and x[2] is not None:
                out = out + x[2]
        elif op == "ReduceSum":
            axes = tuple(int(v) for v in x[1]) if len(x) > 1 and x[1] is not None else None
            out = x[0].astype(np.float64).sum(axis=axes, keepdims=bool(a.get("keepdims", 1)))
        elif op == "ReduceMean":
            out = x[0].astype(np.float64).mean(axis=tuple(a["axes"]), keepdims=bool(a.get("keepdims", 1)))
        elif op == "Conv":
            out = _conv(x[0], x[1], x[2] if len(x) > 2 else None, a.get("strides", [1, 1]), a.get("pads", [0, 0, 0, 0]),
                        a.get("group", 1), a.get("dilations", [1, 1]))
        elif op == "ConvTranspose":
            assert not a.get("output_padding") or list(a["output_padding"]) == [0, 0]
            out = _conv_transpose(x[0], x[1], x[2] if len(x) > 2 else None, a.get("strides", [1, 1]), a.get("pads", [0, 0, 0, 0]), a.get("group", 1))
        elif op == "Pad":
            assert a.get("mode", b"constant") == b"edge", a
            p = [int(v) for v in x[1]]
            k = len(p) // 2
            out = np.pad(x[0], [(p[i], p[i + k]) for i in range(k)], mode="edge")
        elif op == "DepthToSpace":
            bs = a["blocksize"]
            assert a.get("mode", b"DCR") == b"CRD"
            n, c, h, w = x[0].shape
            out = x[0].reshape(n, c // (bs * bs), bs, bs, h, w).transpose(0, 1, 4, 2, 5, 3).reshape(n, c // (bs * bs), h * bs, w * bs)
        elif op == "SpaceToDepth":
            bs = a["blocksize"]
            n, c, h, w = x[0].shape
            out = x[0].reshape(n, c, h // bs, bs, w // bs, bs).transpose(0, 3, 5, 1, 2, 4).reshape(n, c * bs * bs, h // bs, w // bs)
        elif op == "Resize":
            assert a.get("mode") == b"linear" and a.get("coordinate_transformation_mode") == b"align_corners", a
            sizes = x[3] if len(x) > 3 and x[3] is not None and x[3].size else np.round(np.array(x[0].shape) * x[2]).astype(int)
            out = _resize_linear_align_corners(x[0], sizes)
        elif op == "ConstantOfShape":
            v = numpy_helper.to_array(a["value"]) if "value" in a else np.zeros(1, np.float32)
            out = np.full([int(s) for s in x[0]], v.reshape(-1)[0], v.dtype)
        elif op == "ArgMax":
            out = np.argmax(x[0], axis=a.get("axis", 0))
            if a.get("keepdims", 1):
                out = np.expand_dims(out, a.get("axis", 0))
            out = out.astype(np.int64)
        elif op == "Range":
            out = np.arange(x[0], x[1], x[2]).astype(x[0].dtype)
        elif op == "Expand":
            out = x[0] * np.ones([int(s) for s in x[1]], x[0].dtype)
        elif op == "Equal":
            out = np.equal(x[0], x[1])
        elif op == "Where":
            out = np.where(x[0], x[1], x[2])
        else:
            raise NotImplementedError(op)
        if isinstance(out, np.ndarray) and out.dtype == np.float64:
            out = out.astype(np.float32)
        env[node.output[0]] = np.asarray(out)
    return {o.name: env[o.name] for o in graph.output}
