"""Olive's CPU int4 recipe (SelectiveMixedPrecision -> gptq -> rtn with 8-bit lm_head and embeddings
-> ModelBuilder int4 -> GraphSurgeries TieWordEmbeddings), as Olive publishes it, on a tiny model;
and each of its passes on its own."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from olivepress.models.handles import HfModel, OnnxModel
from olivepress.passes.base import PassContext

RECIPES = Path(__file__).parent / "olive_recipes"


def _ops(model_dir: Path) -> tuple[Counter, dict]:
    import onnx

    proto = onnx.load(str(model_dir / "model.onnx"), load_external_data=False)
    nodes = {node.name: node for node in proto.graph.node}
    return Counter(node.op_type for node in proto.graph.node), nodes


def _initializers(model_dir: Path) -> set[str]:
    import onnx

    return {
        i.name for i in onnx.load(str(model_dir / "model.onnx"), load_external_data=False).graph.initializer
    }


def _attrs(node) -> dict:
    return {a.name: a.i for a in node.attribute}


def _generate(model_dir: Path, prompt: str = "The quick brown fox") -> str:
    from olivepress.runtime.generate import GenAIModel, SearchOptions

    return GenAIModel(model_dir).generate(prompt, SearchOptions(max_new_tokens=8)).text


def _run_config(config: dict, path: Path) -> subprocess.CompletedProcess:
    """`olivepress run --config` in a fresh process, from the config's folder; it must succeed."""
    path.write_text(json.dumps(config))
    result = subprocess.run(
        [sys.executable, "-m", "olivepress", "run", "--config", path.name],
        cwd=path.parent,
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def test_cpu_int4_recipe_runs_unchanged_to_a_tied_8bit_embedding_model(tiny_llama_dir, tmp_path):
    from olivepress.evaluate.parity import check_parity

    recipe = json.loads((RECIPES / "cpu_int4.json").read_text())
    recipe["input_model"]["model_path"] = str(tiny_llama_dir)
    result = _run_config(recipe, tmp_path / "recipe.json")
    assert "'no_artifacts' has no effect" in result.stderr + result.stdout

    model_dir = tmp_path / "model_cpu_int4" / "model"
    _, nodes = _ops(model_dir)
    lookup = nodes["/model/embed_tokens/Gather/GatherBlockQuantized"]
    head = nodes["/lm_head/MatMulNBits"]
    assert _attrs(lookup)["bits"] == 8 and _attrs(head)["bits"] == 8
    # one copy: the lookup reads lm_head's integers, and no float embedding table is left
    assert nodes["/model/embed_tokens/Gather/TiedReshape"].input[0] == head.input[1]
    assert not any("embed_tokens.weight" in name for name in _initializers(model_dir))
    # SelectiveMixedPrecision kept some decoder MatMuls at 8 bits, GPTQ the rest at 4
    layer_bits = Counter(
        _attrs(n)["bits"] for name, n in nodes.items() if n.op_type == "MatMulNBits" and "layers" in name
    )
    assert layer_bits[4] > 0 and layer_bits[8] > 0
    assert _generate(model_dir)

    # what the RTN checkpoint holds is what the ONNX model holds
    footprint = json.loads((tmp_path / "model_cpu_int4" / "footprint.json").read_text())
    rtn_path = next(n["model"]["path"] for n in footprint["nodes"] if n["pass_name"] == "r")
    parity = check_parity(model_dir, HfModel(path=rtn_path), sample_tokens=2).variants[0]
    assert parity.top1_agreement == 1.0 and parity.max_abs_diff < 0.05

    # The _with_eval twin, its lm-eval task swapped for the shipped offline one: the passes come
    # from the cache, and its LMEvaluator scores the output model.
    with_eval = json.loads((RECIPES / "cpu_int4_with_eval.json").read_text())
    assert with_eval["passes"] == recipe["passes"]
    with_eval["input_model"]["model_path"] = str(tiny_llama_dir)
    with_eval["evaluators"]["mmlu"]["tasks"] = ["olivepress_travel_mc"]
    _run_config(with_eval, tmp_path / "with_eval.json")
    footprint = json.loads((tmp_path / "model_cpu_int4" / "footprint.json").read_text())
    metrics = footprint["evaluations"][0]["candidates"][0]["metrics"]
    assert 0 <= metrics["olivepress_travel_mc.acc"]["value"] <= 1
    assert "input_metrics" not in footprint or not footprint["input_metrics"]  # evaluate_input_model: false


def test_k_quant_mixed_promotes_lm_head_and_the_first_layers_qkv_and_down_proj(tiny_llama_dir, tmp_path):
    from olivepress.passes.torch import selective_mixed_precision as smp
    from olivepress.passes.torch.mixed_precision import read_mixed_precision

    out = tmp_path / "smp"
    handle = smp.run(
        HfModel(path=str(tiny_llama_dir)), smp.Config(algorithm="k_quant_mixed"), out, PassContext()
    )
    info = read_mixed_precision(Path(handle.path))
    # 2 layers: layer 0 is in the first eighth; layer 1 is neither in the last eighth nor a third one
    assert set(info["overrides"]) == {
        "lm_head",
        "model.embed_tokens",
        "model.layers.0.mlp.down_proj",
        "model.layers.0.self_attn.q_proj",
        "model.layers.0.self_attn.k_proj",
        "model.layers.0.self_attn.v_proj",
    }
    assert info["default"] == {"bits": 4}
    assert (out / "model.safetensors").stat().st_ino == (tiny_llama_dir / "model.safetensors").stat().st_ino


@pytest.mark.parametrize("algorithm", ["kld_gradient", "snr"])
def test_scored_selection_promotes_the_asked_share_with_qkv_together(tiny_llama_dir, tmp_path, algorithm):
    import torch

    from olivepress.models.loading import load_causal_lm
    from olivepress.passes.torch import selective_mixed_precision as smp
    from olivepress.passes.torch.mixed_precision import read_mixed_precision

    config = smp.Config(algorithm=algorithm, ratio=0.7, num_calib_samples=2, calib_seq_len=64)
    handle = smp.run(HfModel(path=str(tiny_llama_dir)), config, tmp_path / "smp", PassContext())
    overrides = read_mixed_precision(Path(handle.path))["overrides"]
    lm = load_causal_lm(HfModel(path=str(tiny_llama_dir)))
    numel = {n: m.weight.numel() for n, m in lm.named_modules() if isinstance(m, torch.nn.Linear)}
    promoted = sum(numel[n] for n in overrides if n in numel)
    assert promoted >= 0.3 * sum(numel.values())
    assert all(o == {"bits": 8, "group_size": 128, "symmetric": False} for o in overrides.values())
    for layer in (0, 1):
        chosen = {
            p for p in ("q_proj", "k_proj", "v_proj") if f"model.layers.{layer}.self_attn.{p}" in overrides
        }
        assert chosen in (set(), {"q_proj", "k_proj", "v_proj"})


def _untied_llama(tiny_llama_dir: Path, folder: Path) -> Path:
    import shutil

    import torch

    from olivepress.models.loading import load_causal_lm

    lm = load_causal_lm(HfModel(path=str(tiny_llama_dir)))
    lm.config.tie_word_embeddings = False
    lm.lm_head.weight = torch.nn.Parameter(lm.lm_head.weight.detach().clone() * 1.5)
    lm.save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (tiny_llama_dir / name).is_file():
            shutil.copy(tiny_llama_dir / name, folder / name)
    return folder


def test_rtn_embeds_on_an_untied_model_become_their_own_gather_block_quantized(
    tiny_llama_dir, tmp_path, caplog
):
    from olivepress.evaluate.parity import check_parity
    from olivepress.passes.onnx import graph_surgeries, model_builder
    from olivepress.passes.torch import rtn

    source = HfModel(path=str(_untied_llama(tiny_llama_dir, tmp_path / "untied")))
    ctx = PassContext(scratch_dir=tmp_path / "scratch")
    config = rtn.Config(
        bits=4,
        lm_head=True,
        embeds=True,
        overrides={"lm_head": {"bits": 8}, "re:.*embed_tokens": {"bits": 8}},
    )
    quantized = rtn.run(source, config, tmp_path / "rtn", ctx)
    meta = quantized.quantization_config()["meta"]["embeds"]
    assert meta == {"bits": 8, "group_size": 64, "sym": False, "tied_to_lm_head": False}
    built = model_builder.run(quantized, model_builder.Config(precision="int4"), tmp_path / "onnx", ctx)
    _, nodes = _ops(Path(built.path))
    lookup = next(n for n in nodes.values() if n.op_type == "GatherBlockQuantized")
    assert _attrs(lookup)["bits"] == 8 and lookup.input[0] == "/model/embed_tokens/Gather/qweight"
    parity = check_parity(Path(built.path), quantized, sample_tokens=2).variants[0]
    assert parity.top1_agreement == 1.0 and parity.max_abs_diff < 0.05

    # the embeddings are not lm_head's weights: TieWordEmbeddings leaves them apart and says so
    with caplog.at_level(logging.WARNING, logger="olivepress"):
        tied = graph_surgeries.run(
            OnnxModel(path=built.path),
            graph_surgeries.Config(surgeries=[{"surgeon": "TieWordEmbeddings"}]),
            tmp_path / "tied",
            ctx,
        )
    assert any("differ from lm_head" in r.getMessage() for r in caplog.records)
    assert _generate(Path(tied.path))


def test_overrides_take_olive_literal_names_and_re_patterns():
    from olivepress.quant.options import ModuleOverride, find_override

    names = {"model.layers.1.mlp.down_proj", "model.layers.10.mlp.down_proj", "lm_head"}
    overrides = {
        "model.layers.1.mlp.down_proj": ModuleOverride(bits=8),
        "re:.*layers\\.1\\d\\..*": ModuleOverride(bits=2),
        "lm_": ModuleOverride(skip=True),
    }
    assert find_override(overrides, "model.layers.1.mlp.down_proj", names).bits == 8
    assert find_override(overrides, "model.layers.10.mlp.down_proj", names).bits == 2  # not the literal key
    assert find_override(overrides, "lm_head", names).skip  # a plain key is still a search pattern
    assert find_override(overrides, "model.layers.2.mlp.down_proj", names) == ModuleOverride()


def test_wikitext_calibration_falls_back_to_the_shipped_text(tiny_llama_dir, caplog):
    from olivepress.data.calibration import calibration_stream
    from olivepress.data.config import DataConfig
    from olivepress.models.loading import load_tokenizer

    tokenizer = load_tokenizer(HfModel(path=str(tiny_llama_dir)))
    wikitext = DataConfig.model_validate(
        {
            "name": "wikitext2",
            "load_dataset_config": {"data_name": "wikitext", "subset": "wikitext-2-raw-v1", "split": "train"},
        }
    )
    with caplog.at_level(logging.WARNING):
        stream, _ = calibration_stream(tokenizer, wikitext)
    assert stream == calibration_stream(tokenizer, None)[0]
    assert any(
        "does not download" in r.getMessage() and "shipped calibration text" in r.getMessage()
        for r in caplog.records
    )


def test_a_hub_data_set_other_than_wikitext_is_refused_with_its_name():
    from olivepress.data.config import DataConfig
    from olivepress.data.loading import load_records
    from olivepress.errors import OlivepressError

    config = DataConfig.model_validate(
        {"name": "d", "load_dataset_config": {"data_name": "tatsu-lab/alpaca"}}
    )
    with pytest.raises(OlivepressError, match="hub data set 'tatsu-lab/alpaca'.*data_files to that file"):
        load_records(config)


def test_quantize_then_auto_opt_gives_tied_8bit_embeddings_and_lm_head_by_default(tiny_llama_dir, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}

    def olivepress(*args: str) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "olivepress", *args, "--cache_dir", str(tmp_path / "cache")],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr[-2000:]

    olivepress("quantize", "-m", str(tiny_llama_dir), "--algorithm", "gptq", "-o", str(tmp_path / "gptq"))
    olivepress(
        "auto-opt", "-m", str(tmp_path / "gptq" / "model"), "--use_ort_genai", "-o", str(tmp_path / "out")
    )
    footprint = json.loads((tmp_path / "out" / "footprint.json").read_text())
    assert [n["pass_type"] for n in footprint["nodes"]] == ["RTN", "ModelBuilder"]
    _, nodes = _ops(tmp_path / "out" / "model")
    lookup = nodes["/model/embed_tokens/Gather/GatherBlockQuantized"]
    assert _attrs(lookup)["bits"] == 8 and _attrs(nodes["/lm_head/MatMulNBits"])["bits"] == 8
    (check,) = footprint["checks"].values()
    assert check["variants"][0]["top1_agreement"] == 1.0
