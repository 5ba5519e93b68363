"""Writes the diffusers StableCascadeCombinedPipeline-style ONNX folder (opset 17, fp32, weights inline, dynamic batch)."""
import copy
import json
import os
import shutil

import onnx
import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
SCHEDULER = {"_class_name": "DDPMWuerstchenScheduler", "s": 0.008, "scaler": 1.0}


def _json(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def _onnx(module, args, path, inputs, outputs, axes, out_shapes):
    """out_shapes: {output: [dim name or size, ...]}, written over the exporter's inferred output shapes (which come out
    with generated names such as 'LayerNormalizationlast_hidden_state_dim_1')."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with torch.no_grad():
        torch.onnx.export(module, args, tmp, input_names=inputs, output_names=outputs, dynamic_axes=axes,
                          opset_version=17, do_constant_folding=True)
    m = onnx.load(tmp)
    for o in m.graph.output:
        dims = o.type.tensor_type.shape.dim
        for d, v in zip(dims, out_shapes[o.name]):
            if isinstance(v, str):
                d.dim_param = v
            else:
                d.dim_value = v
    onnx.checker.check_model(m)
    onnx.save(m, tmp)
    os.replace(tmp, path)


class TextExport(nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, input_ids):
        return self.m(input_ids)


class PriorExport(nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, sample, timestep_ratio, clip_text_pooled, clip_text, clip_img):
        return self.m(sample, timestep_ratio, clip_text_pooled, clip_text, clip_img)


class DecoderExport(nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, sample, timestep_ratio, clip_text_pooled, effnet):
        return self.m(sample, timestep_ratio, clip_text_pooled, effnet=effnet)


def example_inputs(prior_cfg, decoder_cfg, text_cfg, effnet_size, latent_size, pad_id):
    """One small input per component (batch 2), also used by check_onnx.py."""
    g = torch.Generator().manual_seed(0)
    w, p = text_cfg["hidden_size"], text_cfg["projection_dim"]
    ids = torch.full((2, 77), pad_id, dtype=torch.int32)
    ids[:, 0] = pad_id - 1
    ids[0, 1:4] = torch.tensor([400, 450, 500], dtype=torch.int32)
    return {
        "text_encoder": (ids,),
        "prior_prior": (torch.randn(2, prior_cfg["in_channels"], effnet_size, effnet_size, generator=g), torch.tensor([1.0, 0.3]),
                        torch.randn(2, 1, p, generator=g), torch.randn(2, 77, w, generator=g),
                        torch.zeros(2, 1, prior_cfg["clip_image_in_channels"])),
        "decoder": (torch.randn(2, 4, latent_size, latent_size, generator=g), torch.tensor([0.9, 0.1]),
                    torch.randn(2, 1, p, generator=g), torch.randn(2, 16, effnet_size, effnet_size, generator=g)),
        "vqgan": (torch.randn(2, 4, latent_size, latent_size, generator=g),),
    }


IO = {
    "text_encoder": None,  # filled in with the layer count
    "prior_prior": (["sample", "timestep_ratio", "clip_text_pooled", "clip_text", "clip_img"], ["out_sample"]),
    "decoder": (["sample", "timestep_ratio", "clip_text_pooled", "effnet"], ["out_sample"]),
    "vqgan": (["latent_sample"], ["sample"]),
}


def text_io(layers):
    return ["input_ids"], ["text_embeds", "last_hidden_state", f"hidden_states.{layers}"]


def export_folder(out, tokenizer, text, prior, decoder, vq, scale_factor, text_cfg, vq_cfg, clip_img, effnet_size, info):
    text, prior, decoder, vq = (copy.deepcopy(m).eval().float() for m in (text, prior, decoder, vq))
    pcfg = prior.unet.cfg if hasattr(prior, "unet") else prior.cfg
    dcfg = decoder.unet.cfg if hasattr(decoder, "unet") else decoder.cfg
    latent_size = 16
    ex = example_inputs(pcfg, dcfg, text_cfg, effnet_size, latent_size, tokenizer.pad_id)
    b = {0: "batch_size"}
    hw = {0: "batch_size", 2: "height", 3: "width"}

    ins, outs = text_io(text_cfg["layers"])
    w = text_cfg["hidden_size"]
    _onnx(TextExport(text), ex["text_encoder"], os.path.join(out, "text_encoder", "model.onnx"), ins, outs,
          {"input_ids": b, "text_embeds": b, "last_hidden_state": b, outs[2]: b},
          {"text_embeds": ["batch_size", text_cfg["projection_dim"]], "last_hidden_state": ["batch_size", 77, w], outs[2]: ["batch_size", 77, w]})
    text_json = {
        "_class_name": "CLIPTextModelWithProjection", "architectures": ["CLIPTextModelWithProjection"],
        "model_type": "clip_text_model", "vocab_size": len(tokenizer.vocab), "hidden_size": w,
        "intermediate_size": 4 * w, "num_hidden_layers": text_cfg["layers"], "num_attention_heads": text_cfg["heads"],
        "max_position_embeddings": 77, "hidden_act": "gelu", "layer_norm_eps": 1e-5,
        "projection_dim": text_cfg["projection_dim"], "bos_token_id": tokenizer.bos_id, "eos_token_id": tokenizer.eos_id,
        "pad_token_id": tokenizer.pad_id, "torch_dtype": "float32"}
    _json(os.path.join(out, "text_encoder", "config.json"), text_json)
    os.makedirs(os.path.join(out, "prior_text_encoder"), exist_ok=True)
    shutil.copyfile(os.path.join(out, "text_encoder", "model.onnx"), os.path.join(out, "prior_text_encoder", "model.onnx"))
    _json(os.path.join(out, "prior_text_encoder", "config.json"), text_json)

    ins, outs = IO["prior_prior"]
    _onnx(PriorExport(prior), ex["prior_prior"], os.path.join(out, "prior_prior", "model.onnx"), ins, outs,
          {"sample": hw, "timestep_ratio": b, "clip_text_pooled": b, "clip_text": b, "clip_img": b, "out_sample": hw},
          {"out_sample": ["batch_size", pcfg["out_channels"], "height", "width"]})
    _json(os.path.join(out, "prior_prior", "config.json"), dict(pcfg, sample_size=effnet_size))

    ins, outs = IO["decoder"]
    _onnx(DecoderExport(decoder), ex["decoder"], os.path.join(out, "decoder", "model.onnx"), ins, outs,
          {"sample": hw, "timestep_ratio": b, "clip_text_pooled": b, "effnet": {0: "batch_size", 2: "effnet_height", 3: "effnet_width"}, "out_sample": hw},
          {"out_sample": ["batch_size", dcfg["out_channels"], "height", "width"]})
    _json(os.path.join(out, "decoder", "config.json"), dict(dcfg, sample_size=latent_size))

    ins, outs = IO["vqgan"]
    _onnx(vq.decoder, ex["vqgan"], os.path.join(out, "vqgan", "model.onnx"), ins, outs,
          {"latent_sample": {0: "batch_size", 2: "latent_height", 3: "latent_width"},
           "sample": {0: "batch_size", 2: "height", 3: "width"}},
          {"sample": ["batch_size", 3, "height", "width"]})
    _json(os.path.join(out, "vqgan", "config.json"), {
        "_class_name": "PaellaVQModel", "in_channels": 3, "out_channels": 3, "up_down_scale_factor": 2,
        "levels": len(vq_cfg["levels"]), "bottleneck_blocks": vq_cfg["bottleneck_blocks"], "embed_dim": vq_cfg["levels"][-1],
        "latent_channels": vq_cfg["latent_channels"], "num_vq_embeddings": 0, "scale_factor": scale_factor,
        "_note": "decoder only (decode(latents, force_not_quantize=True)); trained without a quantizer, so no codebook"})

    for name in ("prior_scheduler", "scheduler"):
        _json(os.path.join(out, name, "scheduler_config.json"), SCHEDULER)
    for name in ("prior_tokenizer", "tokenizer"):
        shutil.copytree(os.path.join(ROOT, "models", "tiny-shapes", "tokenizer"), os.path.join(out, name), dirs_exist_ok=True)
    os.makedirs(os.path.join(out, "evaluation"), exist_ok=True)
    shutil.copyfile(os.path.join(ROOT, "models", "tiny-shapes", "evaluation", "heldout.json"), os.path.join(out, "evaluation", "heldout.json"))

    ort = ["diffusers", "OnnxRuntimeModel"]
    _json(os.path.join(out, "model_index.json"), {
        "_class_name": "StableCascadeCombinedPipeline",
        "_edgediffusion": dict({"architecture": "tiny-cascade", "weights": "trained", "recipe": "training/tiny-cascade",
                                "image_size": 64, "prior_steps": 20, "decoder_steps": 10, "prior_guidance_scale": 4.0,
                                "decoder_guidance_scale": 0.0}, **info),
        "decoder": ort, "prior_prior": ort, "prior_scheduler": ["diffusers", "DDPMWuerstchenScheduler"],
        "prior_text_encoder": ort, "prior_tokenizer": ["transformers", "CLIPTokenizer"],
        "scheduler": ["diffusers", "DDPMWuerstchenScheduler"], "text_encoder": ort,
        "tokenizer": ["transformers", "CLIPTokenizer"], "vqgan": ort})
