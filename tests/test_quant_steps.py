"""The quantizers' steps in olivepress/quant/ on the tiny Llama: searches return data and leave
the model alone, applying a scale changes the weights but not the float function, the walk's
AWQ step is exactly those steps in order, the plan and the checkpoint writer state a layout
rule the same way, quant/ stands below models/ and passes/, and torch_threads restores."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

from olivepress.cpu import available_cores, torch_threads
from olivepress.errors import OlivepressError
from olivepress.models.families import family_of
from olivepress.models.handles import HfModel
from olivepress.models.loading import load_causal_lm
from olivepress.quant import awq
from olivepress.quant.activations import LayerInputs, first_layer_inputs
from olivepress.quant.checkpoint import layout_problem
from olivepress.quant.decoder import decoder_layers
from olivepress.quant.grid import Grid, quantize_weight
from olivepress.quant.options import AwqOptions, QuantOptions
from olivepress.quant.plan import plan_quantization
from olivepress.quant.rtn import round_to_nearest

LLAMA = family_of("llama")  # the tiny model's family: its AWQ scale groups


def _first_layer(folder) -> tuple[nn.Module, LayerInputs, dict[str, Grid]]:
    lm = load_causal_lm(HfModel(path=str(folder))).eval()
    tokens = torch.randint(5, 384, (4, 16), generator=torch.Generator().manual_seed(0))
    inputs = first_layer_inputs(lm, tokens, batch_size=2)
    layer = decoder_layers(lm)[0][0]
    grids = {name: Grid(4, 32) for name, m in layer.named_modules() if isinstance(m, nn.Linear)}
    return layer, inputs, grids


def _weights(layer: nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.clone() for name, tensor in layer.state_dict().items()}


def test_awq_searches_return_data_and_applying_keeps_the_float_function(tiny_llama_dir):
    layer, inputs, grids = _first_layer(tiny_llama_dir)
    modules = dict(layer.named_modules())
    outputs, xs = inputs.run(layer, capture=sorted(grids))
    before = _weights(layer)
    options = AwqOptions()

    scales = awq.search_scales(layer, xs, grids, options, LLAMA)
    clips = awq.search_clips(modules, xs, grids, options)
    assert all(torch.equal(before[name], tensor) for name, tensor in layer.state_dict().items())
    # v_proj (2 KV heads) is narrower than o_proj's input, so o_proj has no scale group.
    assert [s.group.linears for s in scales] == [
        ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"],
        ["mlp.gate_proj", "mlp.up_proj"],
        ["mlp.down_proj"],
    ]
    assert set(clips) == set(grids) - {"self_attn.q_proj", "self_attn.k_proj"}  # the softmax amplifies q/k

    awq.apply_scales(modules, scales, xs)
    assert not torch.equal(before["mlp.down_proj.weight"], layer.mlp.down_proj.weight)
    assert not torch.equal(before["input_layernorm.weight"], layer.input_layernorm.weight)
    assert xs["self_attn.q_proj"] is xs["self_attn.v_proj"]  # one scaled input per group
    rescaled, _ = inputs.run(layer)
    for a, b in zip(outputs, rescaled, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_awq_layer_step_is_search_apply_search_round(tiny_llama_dir):
    by_walk, inputs, grids = _first_layer(tiny_llama_dir)
    by_hand, _, _ = _first_layer(tiny_llama_dir)
    options = AwqOptions()
    walked = awq.layer_quantizer(options, LLAMA)(by_walk, inputs, grids)

    modules = dict(by_hand.named_modules())
    capture = ["mlp.down_proj", "mlp.gate_proj", "self_attn.o_proj", "self_attn.q_proj"]
    _, xs = inputs.run(by_hand, capture=capture)
    awq.apply_scales(modules, awq.search_scales(by_hand, xs, grids, options, LLAMA), xs)
    shared = {
        "self_attn.k_proj": "self_attn.q_proj",
        "self_attn.v_proj": "self_attn.q_proj",
        "mlp.up_proj": "mlp.gate_proj",
    }
    input_of = {n: n for n in grids} | shared
    by_steps = round_to_nearest(modules, grids, awq.search_clips(modules, xs, grids, options, input_of))

    assert walked.keys() == by_steps.keys()
    for name, q in walked.items():
        assert torch.equal(q.codes, by_steps[name].codes) and torch.equal(q.scales, by_steps[name].scales)
    hand = by_hand.state_dict()
    assert all(torch.equal(tensor, hand[name]) for name, tensor in by_walk.state_dict().items())


def test_plan_and_checkpoint_state_the_awq_layout_rule_alike(tiny_llama_dir):
    lm = load_causal_lm(HfModel(path=str(tiny_llama_dir)))
    options = QuantOptions(group_size=128, ragged_groups="short_last_group", layout="awq")
    with pytest.raises(OlivepressError) as refused:
        plan_quantization(lm, options, layouts=("awq", "gptq"))
    name = "model.layers.0.self_attn.q_proj"
    q = quantize_weight(lm.get_submodule(name).weight, Grid(4, 128))  # a short group of 64
    problem = layout_problem("awq", name, q, group_size=128)
    assert problem is not None and problem in str(refused.value)
    assert layout_problem("gptq", name, q, group_size=128) is None


def test_quant_does_not_import_models_or_passes():
    modules = [
        "activations",
        "awq",
        "calibration",
        "checkpoint",
        "gptq",
        "layout",
        "options",
        "plan",
        "qconfig",
        "rtn",
    ]
    code = (
        "import sys\n"
        + "".join(f"import olivepress.quant.{m}\n" for m in modules)
        + "print(sorted(m for m in sys.modules if m.startswith(('olivepress.models', 'olivepress.passes'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_torch_threads_sets_the_count_and_restores_it():
    before = torch.get_num_threads()
    with torch_threads(1) as threads:
        assert torch.get_num_threads() == threads.count == 1
        threads.use(2)
        assert torch.get_num_threads() == 2
        with torch_threads(1):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), torch_threads(1):
        raise RuntimeError("the count comes back after an error too")
    assert torch.get_num_threads() == before
    with torch_threads() as free:  # default: the cores other work leaves free
        assert 1 <= free.count <= available_cores()
