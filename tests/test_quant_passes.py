"""The RTN, AWQ and GPTQ passes on the tiny Llama: checkpoints that load as the exact grid,
determinism, the layouts they choose, clear errors, and AWQ/GPTQ beating RTN where
activations have outlier channels."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pydantic
import pytest
import torch
from safetensors.torch import load_file

from olivepress.errors import OlivepressError
from olivepress.models.handles import HfModel
from olivepress.models.loading import load_causal_lm
from olivepress.passes.base import PassContext
from olivepress.passes.registry import find_pass
from olivepress.passes.torch import awq, gptq, rtn
from olivepress.quant.awq import search_scale
from olivepress.quant.clip import clip_weight, group_gram, search_clip
from olivepress.quant.gptq import gptq_quantize, hessian
from olivepress.quant.grid import Grid, fake_quantize, quantize_weight

CALIB = {"num_calib_samples": 4, "calib_seq_len": 32}
PASSES = {"rtn": (rtn, {}), "awq": (awq, CALIB), "gptq": (gptq, CALIB)}


def _run(module, source: Path, out: Path, **options) -> HfModel:
    return module.run(HfModel(path=str(source)), module.Config(**options), out, PassContext())


def _unpack(words: torch.Tensor, dim: int) -> torch.Tensor:
    """4-bit values of int32 words along `dim`, written out independently of olivepress.packing."""
    w = words.to(torch.int64) & 0xFFFFFFFF
    parts = [(w >> (4 * j)) & 0xF for j in range(8)]
    return torch.stack(parts, dim=dim + 1).flatten(dim, dim + 1)


def _dequantise_by_hand(folder: Path) -> dict[str, torch.Tensor]:
    config = json.loads((folder / "config.json").read_text())["quantization_config"]
    tensors = load_file(str(folder / "model.safetensors"))
    weights = {}
    for key in [k for k in tensors if k.endswith(".qweight")]:
        name = key.removesuffix(".qweight")
        scales = tensors[f"{name}.scales"].float()  # [groups, out]
        if config["quant_method"] == "awq":
            order = [0, 4, 1, 5, 2, 6, 3, 7]  # column j of a word sits in nibble order[j]
            codes = _unpack(tensors[key], 1).reshape(-1, scales.shape[1] // 8, 8)[:, :, order].flatten(1)
            zeros = (
                _unpack(tensors[f"{name}.qzeros"], 1).reshape(scales.shape[0], -1, 8)[:, :, order].flatten(1)
            )
            g_idx = torch.arange(codes.shape[0]) // (codes.shape[0] // scales.shape[0])
        else:
            codes = _unpack(tensors[key], 0)
            zeros = (_unpack(tensors[f"{name}.qzeros"], 1) + 1) & 0xF
            g_idx = tensors[f"{name}.g_idx"].long()
        weights[name] = ((codes - zeros[g_idx]) * scales[g_idx]).T  # [out, in]
    return weights


@pytest.mark.parametrize("algorithm", ["rtn", "awq", "gptq"])
def test_pass_writes_a_checkpoint_that_loads_as_the_exact_grid(algorithm, tiny_llama_dir, tmp_path):
    module, options = PASSES[algorithm]
    handle = _run(module, tiny_llama_dir, tmp_path / algorithm, group_size=32, **options)
    folder = Path(handle.path)
    config = json.loads((folder / "config.json").read_text())
    qconfig = config["quantization_config"]
    assert qconfig["quant_method"] == ("gptq" if algorithm == "gptq" else "awq")
    assert qconfig["bits"] == 4 and qconfig["group_size"] == 32
    assert qconfig["meta"]["algorithm"] == algorithm
    assert (folder / "tokenizer.json").is_file() and (folder / "tokenizer_config.json").is_file()

    lm = load_causal_lm(handle)
    by_hand = _dequantise_by_hand(folder)
    assert len(by_hand) == 14  # 7 Linear layers x 2 decoder layers
    modules = dict(lm.named_modules())
    for name, weight in by_hand.items():
        assert torch.equal(modules[name].weight, weight), name
    # tied lm_head still tied to the (float) embeddings
    assert lm.get_output_embeddings().weight.data_ptr() == lm.get_input_embeddings().weight.data_ptr()


def test_awq_and_gptq_outputs_stay_close_to_the_float_model(tiny_llama_dir, tmp_path):
    ids = torch.tensor([[1, 20, 30, 40, 50, 60, 70, 80]])
    with torch.no_grad():
        reference = load_causal_lm(HfModel(path=str(tiny_llama_dir)))(ids).logits
        for algorithm in ("awq", "gptq"):
            module, options = PASSES[algorithm]
            lm = load_causal_lm(_run(module, tiny_llama_dir, tmp_path / algorithm, group_size=32, **options))
            assert (lm(ids).logits - reference).abs().max() < 0.25 * reference.abs().max()


@pytest.mark.parametrize("algorithm", ["awq", "gptq"])
def test_same_seed_gives_identical_files(algorithm, tiny_llama_dir, tmp_path):
    module, options = PASSES[algorithm]
    first = Path(_run(module, tiny_llama_dir, tmp_path / "a", **options).path)
    second = Path(_run(module, tiny_llama_dir, tmp_path / "b", **options).path)
    for name in ("model.safetensors", "config.json"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_ragged_layers_get_one_smaller_group_in_the_awq_layout_by_default(tiny_llama_dir, tmp_path, caplog):
    # hidden 64 < group 128: every layer gets groups of 64, so the checkpoint stays AutoAWQ
    with caplog.at_level("INFO", logger="olivepress"):
        folder = Path(_run(awq, tiny_llama_dir, tmp_path / "out", **CALIB).path)
    qconfig = json.loads((folder / "config.json").read_text())["quantization_config"]
    assert qconfig["quant_method"] == "awq" and qconfig["version"] == "gemm" and qconfig["group_size"] == 64
    assert "group size 64 for every layer" in caplog.text
    tensors = load_file(str(folder / "model.safetensors"))
    assert tensors["model.layers.0.mlp.down_proj.scales"].shape[0] == 2  # 128 inputs in groups of 64


def test_ragged_layers_keep_per_module_groups_in_the_gptq_layout(tiny_llama_dir, tmp_path):
    # the GPTQ layout route: the 64-wide inputs get groups of 64, down_proj (128 wide) keeps 128
    folder = Path(_run(rtn, tiny_llama_dir, tmp_path / "out", layout="gptq").path)
    qconfig = json.loads((folder / "config.json").read_text())["quantization_config"]
    assert qconfig["quant_method"] == "gptq" and qconfig["group_size"] == 128
    dynamic = qconfig["dynamic"]
    assert all(v["group_size"] == 64 for v in dynamic.values())
    patterns = [p.removeprefix("+:") for p in dynamic]
    tensors = load_file(str(folder / "model.safetensors"))
    for key in [k for k in tensors if k.endswith(".qweight")]:
        # GPTQModel matches module names, the ORT GenAI builder tensor names: both must work
        matched = any(re.match(p, key) for p in patterns)
        assert matched == ("down_proj" not in key), key
        assert any(re.match(p, key.removesuffix(".qweight")) for p in patterns) == matched
        assert tensors[key.replace("qweight", "scales")].shape[0] == 1  # 64 in groups of 64, 128 of 128


def test_short_last_group_option_writes_ragged_gptq(tiny_llama_dir, tmp_path):
    folder = Path(
        _run(
            rtn,
            tiny_llama_dir,
            tmp_path / "out",
            group_size=32,
            ragged_groups="short_last_group",
            overrides={"mlp.down_proj": {"group_size": 256}},
        ).path
    )
    tensors = load_file(str(folder / "model.safetensors"))
    # down_proj: 128 inputs in one short group of 256
    assert tensors["model.layers.0.mlp.down_proj.scales"].shape[0] == 1
    lm = load_causal_lm(HfModel(path=str(folder)))
    assert torch.equal(
        lm.model.layers[0].mlp.down_proj.weight, _dequantise_by_hand(folder)["model.layers.0.mlp.down_proj"]
    )


def test_modules_to_not_convert_and_lm_head(tiny_llama_dir, tmp_path):
    folder = Path(
        _run(
            rtn,
            tiny_llama_dir,
            tmp_path / "out",
            group_size=32,
            include_lm_head=True,
            modules_to_not_convert=["mlp.down_proj"],
        ).path
    )
    config = json.loads((folder / "config.json").read_text())
    assert config["tie_word_embeddings"] is False
    assert config["quantization_config"]["modules_to_not_convert"] == ["mlp.down_proj"]
    tensors = load_file(str(folder / "model.safetensors"))
    assert "lm_head.qweight" in tensors and "model.embed_tokens.weight" in tensors
    assert "model.layers.0.mlp.down_proj.weight" in tensors
    source = load_causal_lm(HfModel(path=str(tiny_llama_dir)))
    lm = load_causal_lm(HfModel(path=str(folder)))
    assert torch.equal(lm.model.embed_tokens.weight, source.model.embed_tokens.weight.half().float())
    assert not torch.equal(lm.lm_head.weight, lm.model.embed_tokens.weight)


def test_eight_bit_uses_the_gptq_layout(tiny_llama_dir, tmp_path):
    folder = Path(_run(rtn, tiny_llama_dir, tmp_path / "out", bits=8, group_size=32).path)
    qconfig = json.loads((folder / "config.json").read_text())["quantization_config"]
    assert qconfig["quant_method"] == "gptq" and qconfig["bits"] == 8
    lm = load_causal_lm(HfModel(path=str(folder)))
    source = load_causal_lm(HfModel(path=str(tiny_llama_dir)))
    w, q = source.model.layers[0].self_attn.q_proj.weight, lm.model.layers[0].self_attn.q_proj.weight
    assert torch.equal(q, quantize_weight(w, Grid(8, 32)).dequantize())


def test_gptq_act_order_records_g_idx(tiny_llama_dir, tmp_path):
    folder = Path(_run(gptq, tiny_llama_dir, tmp_path / "out", group_size=32, desc_act=True, **CALIB).path)
    qconfig = json.loads((folder / "config.json").read_text())["quantization_config"]
    assert qconfig["desc_act"] is True
    g_idx = load_file(str(folder / "model.safetensors"))["model.layers.0.self_attn.q_proj.g_idx"]
    assert sorted(g_idx.tolist()) == [i // 32 for i in range(64)] and g_idx.tolist() != sorted(g_idx.tolist())
    lm = load_causal_lm(HfModel(path=str(folder)))
    assert torch.equal(
        lm.model.layers[0].self_attn.q_proj.weight,
        _dequantise_by_hand(folder)["model.layers.0.self_attn.q_proj"],
    )


def _llama_with_outlier_channels(source: Path, out: Path) -> Path:
    """The tiny Llama with a few hidden channels 60x larger after each norm, as real models have."""
    lm = load_causal_lm(HfModel(path=str(source)))
    with torch.no_grad():
        for layer in lm.model.layers:
            for norm in (layer.input_layernorm, layer.post_attention_layernorm):
                norm.weight[[3, 17, 40]] *= 60
    lm.save_pretrained(out)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(source / name, out / name)
    return out


def test_gptq_act_scale_folds_awq_scales_and_gets_closer_to_the_float_model(tiny_llama_dir, tmp_path):
    source = _llama_with_outlier_channels(tiny_llama_dir, tmp_path / "src")
    ids = torch.randint(3, 384, (4, 32), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        reference = load_causal_lm(HfModel(path=str(source)))(ids).logits
    errors, norms = {}, {}
    for act_scale in (False, True):
        handle = _run(
            gptq,
            source,
            tmp_path / str(act_scale),
            group_size=32,
            act_scale=act_scale,
            dtype="float32",
            **CALIB,
        )
        qconfig = json.loads((Path(handle.path) / "config.json").read_text())["quantization_config"]
        assert qconfig["meta"]["act_scale"] is act_scale and qconfig["quant_method"] == "gptq"
        lm = load_causal_lm(handle)
        with torch.no_grad():
            errors[act_scale] = float((lm(ids).logits - reference).pow(2).mean())
        norms[act_scale] = lm.model.layers[0].input_layernorm.weight.detach()
    original = load_causal_lm(HfModel(path=str(source))).model.layers[0].input_layernorm.weight.detach()
    assert torch.equal(norms[False], original)
    assert not torch.allclose(norms[True], original)  # the scales went into the norm the checkpoint keeps
    assert errors[True] < 0.8 * errors[False]


# --- errors -------------------------------------------------------------------------------


def test_already_quantized_input_is_refused(tiny_llama_dir, tmp_path):
    quantized = _run(rtn, tiny_llama_dir, tmp_path / "q", group_size=32)
    with pytest.raises(OlivepressError, match="already quantized"):
        awq.run(quantized, awq.Config(**CALIB), tmp_path / "again", PassContext())


def test_zero_calibration_samples_is_a_clear_error(tiny_llama_dir, tmp_path):
    with pytest.raises(OlivepressError, match="num_calib_samples"):
        _run(gptq, tiny_llama_dir, tmp_path / "out", num_calib_samples=0)


def test_awq_layout_that_cannot_hold_the_result_is_a_clear_error(tiny_llama_dir, tmp_path):
    with pytest.raises(OlivepressError, match="4-bit"):
        _run(awq, tiny_llama_dir, tmp_path / "out", bits=8, group_size=32, layout="awq", **CALIB)
    with pytest.raises(OlivepressError, match=r"in_features=64.*group sizes that fit: 64, 32, 16, -1"):
        _run(rtn, tiny_llama_dir, tmp_path / "out", layout="awq", ragged_groups="short_last_group")


def test_ragged_groups_error_names_the_layer(tiny_llama_dir, tmp_path):
    with pytest.raises(OlivepressError, match=r"q_proj has in_features=64, not a multiple of group_size=128"):
        _run(rtn, tiny_llama_dir, tmp_path / "out", ragged_groups="error")


@pytest.mark.parametrize(
    "options", [{"bits": 3}, {"group_size": 48}, {"group_size": 0}, {"sym": True, "zero_point": True}]
)
def test_bad_options_are_refused_by_the_config(options):
    with pytest.raises(pydantic.ValidationError):
        awq.Config(**options)


def test_gptq_pass_refuses_the_awq_layout():
    with pytest.raises(pydantic.ValidationError):
        gptq.Config(layout="nonsense")


def test_registry_knows_the_seed_spellings():
    assert find_pass("AutoAWQQuantizer").module is awq
    assert find_pass("GptqQuantizer").module is gptq
    assert find_pass("RTN").module is rtn and find_pass("Rtn").module is rtn


# --- the algorithms beat RTN where activations have outliers ------------------------------


def _outlier_layer(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    mixing = torch.eye(128) + 1.2 * torch.randn(128, 128, generator=g) / 128**0.5
    x = torch.randn(2048, 128, generator=g) @ mixing  # correlated inputs, as in a real layer
    x[:, [3, 50, 97]] *= 40  # a few input channels carry much larger activations
    w = torch.randn(96, 128, generator=g) * 0.05
    return x, w


def _output_error(x: torch.Tensor, w: torch.Tensor, w_q: torch.Tensor) -> float:
    return float((x @ (w_q - w).T).pow(2).mean())


def test_awq_scale_search_beats_rtn_on_outlier_channels():
    x, w = _outlier_layer()
    grid = Grid(bits=4, group_size=32)
    rtn_error = _output_error(x, w, fake_quantize(w, grid))
    s = search_scale([w], [grid], x, awq.Config())
    awq_error = _output_error(x, w, fake_quantize(w * s, grid) / s)
    assert awq_error < 0.7 * rtn_error


def test_gptq_beats_rtn_on_outlier_channels():
    x, w = _outlier_layer()
    grid = Grid(bits=4, group_size=32)
    rtn_error = _output_error(x, w, fake_quantize(w, grid))
    for desc_act in (False, True):  # the reference GPTQ
        q = gptq_quantize(w, hessian(x), grid, damp_percent=0.01, block_size=128, desc_act=desc_act)
        assert _output_error(x, w, q.dequantize()) < 0.8 * rtn_error
    defaults = gptq.Config()  # with olivepress's diagonal damping and clipping search
    q = gptq_quantize(
        w,
        hessian(x),
        grid,
        damp_percent=defaults.damp_percent,
        diag_damp=defaults.diag_damp,
        clip=defaults.clip,
    )
    assert _output_error(x, w, q.dequantize()) < 0.8 * rtn_error


def test_awq_clip_search_never_does_worse_than_no_clipping():
    x, w = _outlier_layer(seed=1)
    grid = Grid(bits=4, group_size=32)
    gram = group_gram(x, grid)
    clipped = clip_weight(w, search_clip(w, gram, grid, clip_grid=20, max_shrink=0.5), grid)
    assert _output_error(x, w, fake_quantize(clipped, grid)) <= _output_error(
        x, w, fake_quantize(w, grid)
    ) * (1 + 1e-6)


# --- the ORT GenAI model builder reads what the passes write -----------------------------


def test_ort_genai_builder_keeps_the_checkpoint_integers(tiny_llama_dir, tmp_path):
    pytest.importorskip("onnxruntime_genai")
    import contextlib
    import io

    import numpy as np
    import onnx
    from onnx import numpy_helper
    from onnxruntime_genai.models.builder import create_model, parse_extra_options

    from olivepress.quant.checkpoint import read_quantized

    folder = Path(_run(awq, tiny_llama_dir, tmp_path / "awq", group_size=32, **CALIB).path)
    out = tmp_path / "onnx"
    args = (None, str(folder), str(out), "int4", "cpu", str(tmp_path / "cache"))
    with contextlib.redirect_stdout(io.StringIO()):
        create_model(*args, **parse_extra_options(*args, []))
    graph = onnx.load(str(out / "model.onnx")).graph
    initializers = {i.name: i for i in graph.initializer}
    node = next(n for n in graph.node if n.name == "/model/layers.0/mlp/down_proj/MatMulNBits")
    packed = numpy_helper.to_array(initializers[node.input[1]])  # [N, K / block, block / 2] uint8
    codes = np.stack([packed & 0xF, packed >> 4], axis=-1).reshape(packed.shape[0], -1)
    quantized, _, _ = read_quantized(folder)
    assert np.array_equal(codes, quantized["model.layers.0.mlp.down_proj"].codes.numpy())
    shutil.rmtree(tmp_path / "cache", ignore_errors=True)


# --- the embedded SmolLM2 (slow) ----------------------------------------------------------


@pytest.mark.slow
def test_awq_on_smollm2_with_the_seed_defaults(embedded_model_dir, tmp_path):
    """The seed's `quantize --algorithm awq` on the default model: 576-wide inputs do not split
    into groups of 128, so every layer gets groups of 64 and the checkpoint stays AutoAWQ."""
    from olivepress.data.calibration import heldout_text
    from olivepress.evaluate.perplexity import perplexity
    from olivepress.models.loading import load_tokenizer

    source = HfModel(path=str(embedded_model_dir))
    folder = Path(awq.run(source, awq.Config(), tmp_path / "awq", PassContext()).path)
    qconfig = json.loads((folder / "config.json").read_text())["quantization_config"]
    assert qconfig["quant_method"] == "awq" and qconfig["group_size"] == 64
    assert qconfig["meta"]["algorithm"] == "awq"
    fp32_bytes = sum(f.stat().st_size for f in Path(embedded_model_dir).glob("*.safetensors"))
    assert (folder / "model.safetensors").stat().st_size < 0.3 * fp32_bytes

    text = heldout_text("heldout")[:4000]
    tokenizer = load_tokenizer(source)
    base = perplexity(load_causal_lm(source), tokenizer, text, seq_len=512, stride=512)
    quantized = perplexity(
        load_causal_lm(HfModel(path=str(folder))), tokenizer, text, seq_len=512, stride=512
    )
    assert base < quantized < 1.25 * base
