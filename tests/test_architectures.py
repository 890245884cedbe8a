"""The architecture matrix: the seed lab on a tiny random model of every decoder family that
both transformers and the installed ORT GenAI builder know.

Per family: quantize (AWQ, GPTQ, RTN) -> fine-tune a LoRA adapter on the AWQ checkpoint ->
build each checkpoint with the adapter (int4 with the checkpoint's integers, float embeddings,
fp32 compute) -> generate and serve with the adapter off and on. Checks: the build's
MatMulNBits hold the checkpoint's codes bit for bit, the build matches PyTorch + PEFT to 1e-3,
and the adapter changes the output.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from olivepress.models.families import FAMILIES
from olivepress.models.handles import HfModel
from olivepress.passes.base import PassContext
from olivepress.passes.torch import awq, gptq, rtn
from tiny_models import TINY_FAMILIES, save_tiny_decoder

QUANTIZERS = {"awq": awq, "gptq": gptq, "rtn": rtn}
CALIBRATION = {"num_calib_samples": 2, "calib_seq_len": 32}
BY_NAME = {family.name: family for family in FAMILIES}
BUILT = [name for name in TINY_FAMILIES if BY_NAME[name].builder_architecture]
PAIRS = [
    ("What is the capital of France?", "Paris is the capital of France."),
    ("What should I see in Chicago?", "The lakefront and the architecture."),
    ("How should I travel?", "Travel light, book early, and carry a map of the city."),
]
# Longer than the tiny models' 8-token sliding windows, so windowed layers really slide.
PROMPTS = (
    "What is the best thing to see in Chicago? The lakefront and the architecture of the city.",
    "Travel light, book early, and carry a map.",
)


@dataclass
class Lab:
    """One family's trip through the lab: its tiny model, checkpoints, adapter and builds."""

    family: str
    base: Path
    checkpoints: dict[str, Path]
    adapter: Path
    builds: dict[str, Path] = field(default_factory=dict)


def _quantize(algorithm: str, source: Path, out: Path) -> Path:
    module = QUANTIZERS[algorithm]
    options = {"group_size": 32, **({} if algorithm == "rtn" else CALIBRATION)}
    return Path(module.run(HfModel(path=str(source)), module.Config(**options), out, PassContext()).path)


def _finetune(checkpoint: Path, tmp: Path) -> Path:
    from olivepress.api import finetune

    data = tmp / "pairs.jsonl"
    data.write_text("".join(json.dumps({"prompt": p, "response": r}) + "\n" for p, r in PAIRS * 4))
    finetune(
        str(checkpoint),
        data_files=str(data),
        output_path=tmp / "ft",
        cache_dir=tmp / "cache",
        text_template="{prompt} {response}",
        summary=False,
        log_level=3,
        training_args={"max_steps": 3, "learning_rate": 5e-2, "per_device_train_batch_size": 4},
    )
    return tmp / "ft" / "adapter"


def _build(checkpoint: Path, adapter: Path, out: Path) -> Path:
    """The exact int4 build: the checkpoint's integers, float embeddings, fp32 MatMulNBits."""
    from olivepress.api import run

    run(
        {
            "input_model": {"model_path": str(checkpoint), "adapter_path": str(adapter)},
            "passes": {
                "builder": {
                    "type": "ModelBuilder",
                    "precision": "int4",
                    "int4_accuracy_level": 1,
                    "quantize_embeddings": False,
                },
                "extract": {"type": "ExtractAdapters", "adapter_name": "travel"},
            },
            "output_dir": str(out),
            "cache_dir": str(out.parent / "cache"),
        },
        summary=False,
        log_level=3,
    )
    return out / "model"


@pytest.fixture(scope="module", params=BUILT)
def lab(request, tmp_path_factory) -> Lab:
    tmp = tmp_path_factory.mktemp(request.param)
    base = save_tiny_decoder(tmp / "base", request.param)
    checkpoints = {name: _quantize(name, base, tmp / name) for name in QUANTIZERS}
    lab = Lab(request.param, base, checkpoints, _finetune(checkpoints["awq"], tmp))
    lab.builds = {
        name: _build(path, lab.adapter, tmp / f"{name}-build") for name, path in checkpoints.items()
    }
    return lab


def _genai(folder: Path):
    from olivepress.runtime.generate import GenAIModel

    return GenAIModel(folder)


def test_adapter_targets_the_familys_projections(lab):
    config = json.loads((lab.adapter / "adapter_config.json").read_text())
    assert set(config["target_modules"]) == set(BY_NAME[lab.family].lora_targets)


@pytest.mark.parametrize("algorithm", list(QUANTIZERS))
def test_matmulnbits_carry_the_checkpoints_integers(lab, algorithm):
    import onnx
    from onnx import numpy_helper

    from olivepress.quant.checkpoint import read_quantized
    from olivepress.runtime.lora_switch import branch_nodes

    checkpoint, _, _ = read_quantized(lab.checkpoints[algorithm])
    graph = onnx.load(lab.builds[algorithm] / "model.onnx").graph
    initializers = {i.name: i for i in graph.initializer}
    packed_nodes = {n.name: n for n in branch_nodes(graph) if n.op_type == "MatMulNBits"}
    family = BY_NAME[lab.family]
    compared = 0
    for name, weight in checkpoint.items():
        _, _, layer, block, module = name.split(".")  # model.layers.0.self_attn.q_proj
        codes = weight.codes.numpy()
        parts = family.builder_modules(module)
        fused = family.fused_linear(module)
        rows = fused.part_rows(codes.shape[0], 4, 2) if fused else [codes.shape[0]]
        for part, part_codes in zip(parts, np.split(codes, np.cumsum(rows)[:-1]), strict=True):
            node = packed_nodes[f"/model/layers.{layer}/{family.block_of(module)}/{part}/MatMulNBits"]
            packed = numpy_helper.to_array(initializers[node.input[1]])
            built = np.stack([packed & 0xF, packed >> 4], axis=-1).reshape(packed.shape[0], -1)
            assert np.array_equal(built, part_codes), (name, part, block)
            compared += 1
    assert compared >= 7 * 2  # every projection of both layers


@pytest.mark.parametrize("algorithm", list(QUANTIZERS))
def test_exact_build_matches_pytorch_and_peft(lab, algorithm):
    from olivepress.evaluate.parity import check_parity

    report = check_parity(
        lab.builds[algorithm],
        HfModel(path=str(lab.checkpoints[algorithm])),
        {"travel": lab.adapter},
        prompts=PROMPTS,
        sample_tokens=2,
    )
    worst = max(variant.max_abs_diff for variant in report.variants)
    assert all(variant.top1_agreement == 1.0 for variant in report.variants), report.lines()
    assert worst < 1e-3, report.lines()


def test_checkpoints_keep_gemmas_float_tensors_in_float32(lab):
    # Gemma computes NaN in float16; and with float16 norms and embeddings, Gemma-2/3's exact
    # builds were up to 2.5e-3 off PyTorch (float32: within the 1e-3 above).
    expected = "float16" if BY_NAME[lab.family].float16_safe else "float32"
    for checkpoint in lab.checkpoints.values():
        assert json.loads((checkpoint / "config.json").read_text())["dtype"] == expected


def test_generate_and_serve_with_the_adapter_off_and_on(lab):
    from olivepress.runtime.batching import has_windowed_cache
    from olivepress.runtime.generate import SearchOptions
    from test_serve import Running

    model = _genai(lab.builds["awq"])
    ids = model.encode(model.format_prompt(PROMPTS[0]))
    effect = np.abs(model.next_token_logits(ids, "travel") - model.next_token_logits(ids, "base")).max()
    assert effect > 1e-2, effect  # far above the 1e-3 parity bound: the adapter really acts
    generated = {
        name: model.generate(PROMPTS[0], SearchOptions(max_new_tokens=6), adapter=name).text
        for name in ("base", "travel")
    }

    running = Running(model)  # olivepress serve's HTTP server, in a thread of this process
    try:
        # Greedy requests go through the batcher, except for sliding-window models.
        assert (running.server.batcher is None) == has_windowed_cache(lab.builds["awq"])
        client = running.client()
        for served_id, adapter in (("tiny", "base"), ("travel", "travel")):
            messages = [{"role": "user", "content": PROMPTS[0]}]
            reply = client.chat.completions.create(
                model=served_id, messages=messages, max_tokens=6, temperature=0
            )
            assert reply.choices[0].message.content == generated[adapter], adapter
    finally:
        running.stop()


def test_a_prompt_shorter_than_the_sliding_window_generates_what_was_asked(lab):
    """ORT GenAI's windowed attention refuses a cache shorter than the window (Gemma-3-270m's 512
    against an 11-token prompt): the generator gets the window, and stops at max_new_tokens itself."""
    from olivepress.runtime.generate import SearchOptions

    model = _genai(lab.builds["awq"])
    decoder = json.loads((model.folder / "genai_config.json").read_text())["model"]["decoder"]
    window = (decoder.get("sliding_window") or {}).get("window_size")
    if not window:
        pytest.skip(f"{lab.family} has no sliding window")
    assert model.cache_length(2) == window
    assert model.cache_length(window + 5) == window + 5
    prompt = "Hi"
    assert len(model.encode(prompt)) + 2 < window
    result = model.generate(prompt, SearchOptions(max_new_tokens=2), use_chat_template=False)
    assert 1 <= result.new_tokens <= 2


def test_phi3_qlora_adapter_builds_and_acts(tmp_path):
    """QLoRA (an NF4 base from bitsandbytes) on Phi-3's fused layers, built on the float base."""
    from olivepress.api import finetune, run
    from olivepress.evaluate.parity import check_parity

    base = save_tiny_decoder(tmp_path / "phi3", "phi3")
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"prompt": p, "response": r}) + "\n" for p, r in PAIRS * 4))
    finetune(
        str(base),
        data_files=str(data),
        output_path=tmp_path / "ft",
        method="qlora",
        cache_dir=tmp_path / "c",
        text_template="{prompt} {response}",
        summary=False,
        log_level=3,
        training_args={"max_steps": 2, "learning_rate": 5e-2, "per_device_train_batch_size": 4},
    )
    adapter = tmp_path / "ft" / "adapter"
    assert set(json.loads((adapter / "adapter_config.json").read_text())["target_modules"]) == {
        "qkv_proj",
        "o_proj",
        "gate_up_proj",
        "down_proj",
    }
    run(
        {
            "input_model": {"model_path": str(base), "adapter_path": str(adapter)},
            "passes": {
                "builder": {"type": "ModelBuilder", "precision": "fp32"},
                "extract": {"type": "ExtractAdapters", "adapter_name": "travel"},
            },
            "output_dir": str(tmp_path / "out"),
            "cache_dir": str(tmp_path / "c"),
        },
        summary=False,
        log_level=3,
    )
    report = check_parity(
        tmp_path / "out" / "model",
        HfModel(path=str(base)),
        {"travel": adapter},
        prompts=PROMPTS,
        sample_tokens=2,
    )
    assert all(v.max_abs_diff < 1e-3 for v in report.variants), report.lines()
    model = _genai(tmp_path / "out" / "model")
    ids = model.encode(PROMPTS[1])
    assert np.abs(model.next_token_logits(ids, "travel") - model.next_token_logits(ids, "base")).max() > 1e-2


def test_an_unknown_architecture_is_one_line_that_says_what_is_needed():
    from olivepress.errors import OlivepressError
    from olivepress.models.families import builder_family, family_of

    with pytest.raises(OlivepressError, match=r"does not know the gpt_bigcode architecture .*families\.py"):
        family_of({"model_type": "gpt_bigcode"})
    with pytest.raises(OlivepressError, match="builder has no converter for olmo2 models"):
        builder_family({"model_type": "olmo2"})


def test_gemma3_rope_parameters_are_flattened_for_the_builder():
    from transformers import Gemma3TextConfig

    from olivepress.models.families import family_of

    config = Gemma3TextConfig(
        rope_parameters={
            "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1e6},
            "sliding_attention": {"rope_type": "default", "rope_theta": 1e4},
        }
    )
    family_of(config).adapt_builder_config(config)
    assert config.rope_parameters == {"rope_type": "linear", "factor": 8.0, "rope_theta": 1e6}
    assert config.rope_local_base_freq == 1e4


def test_auto_opt_on_an_architecture_the_builder_lacks_is_one_line(tmp_path):
    from test_cli import assert_one_line_error, olivepress

    olmo2 = save_tiny_decoder(tmp_path / "olmo2", "olmo2")
    result = olivepress("auto-opt", "-m", str(olmo2), "--use_ort_genai", "-o", str(tmp_path / "out"))
    assert_one_line_error(result, "the ORT GenAI builder does not convert Olmo2ForCausalLM")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("family", list(TINY_FAMILIES))
def test_awq_scale_groups_keep_the_float_model_exactly(family, tmp_path):
    """Every scale group of every family folds a random scale without changing the float model:
    the group's source really produces the group's input (Gemma's 1 + weight norms included,
    OLMo-2's output norms left alone), and each family's norms absorb where they can."""
    import torch
    from transformers import AutoModelForCausalLM

    from olivepress.quant.awq import GroupScale, apply_scales, scale_groups

    model = AutoModelForCausalLM.from_pretrained(save_tiny_decoder(tmp_path / family, family)).eval()
    ids = torch.tensor([[1, 5, 9, 14, 27, 3, 40, 41, 42, 43, 44, 45]])
    with torch.no_grad():
        before = model(ids).logits
        generator = torch.Generator().manual_seed(0)
        sources = set()
        for layer in model.model.layers:
            groups = scale_groups(layer, BY_NAME[family])
            sources |= {group.prev for group in groups}
            modules = dict(layer.named_modules())
            scales = [
                GroupScale(g, torch.rand(modules[g.linears[0]].in_features, generator=generator) + 0.5)
                for g in groups
            ]
            apply_scales(modules, scales, {})
        after = model(ids).logits
    assert torch.allclose(before, after, atol=1e-4), (before - after).abs().max()
    expected = {source.source for source in BY_NAME[family].scale_groups}
    # v -> o (and Phi-3's qkv -> o) cannot fold with grouped-query attention: fewer v rows than o inputs
    assert sources == {s for s in expected if s not in ("self_attn.v_proj", "self_attn.qkv_proj")}, sources
