"""Olive's config surface: every key and pass has a treatment, the generated table is current,
no-effect keys load with a warning, refused ones stop with a reason, typos still get a hint."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from olivepress.errors import OlivepressError
from olivepress.passes.registry import find_pass
from olivepress.workflow import olive_compat
from olivepress.workflow.load import load_workflow

DOC = Path(__file__).resolve().parents[1] / "docs" / "olive-compat.md"


def test_every_olive_key_has_a_treatment():
    unclassified = [
        f"{section}.{key}"
        for section, keys in olive_compat.olive_section_keys().items()
        for key in keys
        if olive_compat.key_treatment(section, key).status == olive_compat.UNCLASSIFIED
    ]
    assert unclassified == []


def test_every_olive_pass_and_option_has_a_treatment():
    surface = olive_compat.olive_surface()
    assert len(surface["passes"]) > 50  # the extraction found Olive's passes
    missing = []
    for name, data in surface["passes"].items():
        if name in olive_compat.REFUSED_PASSES:
            continue
        spec = find_pass(name)  # raises for a pass that is neither supported nor refused
        missing += [
            f"{name}.{option}"
            for option in data["options"]
            if olive_compat.option_treatment(spec.name, spec.module.Config, option).status
            == olive_compat.UNCLASSIFIED
        ]
    assert missing == []


def test_no_effect_and_refused_entries_are_not_real_options():
    # A table entry for an option the Config really takes would hide that it is implemented.
    for name, table in olive_compat.PASS_OPTIONS.items():
        if name in ("*", "quantizers"):
            continue
        fields = olive_compat.accepted_options(find_pass(name).module.Config)
        assert not (set(table) & fields), name


def test_generated_table_is_current():
    assert DOC.read_text() == olive_compat.render_markdown(), "run python scripts/olive_compat_doc.py"


def _workflow(**extra) -> dict:
    return {"input_model": {"model_path": "default"}, "passes": {"b": {"type": "ModelBuilder"}}, **extra}


def test_no_effect_engine_keys_load_with_one_warning_each(caplog):
    with caplog.at_level(logging.WARNING, logger="olivepress"):
        workflow = load_workflow(_workflow(engine={"no_artifacts": True, "plot_pareto_frontier": True}))
    assert workflow.flows[0][0].spec.name == "ModelBuilder"
    warnings = [r.getMessage() for r in caplog.records if "has no effect" in r.getMessage()]
    assert len(warnings) == 2 and "'no_artifacts'" in warnings[0]


def test_evaluate_input_model_is_a_workflow_option():
    assert load_workflow(_workflow(evaluate_input_model=False)).config.evaluate_input_model is False


def test_refused_engine_key_says_why():
    with pytest.raises(OlivepressError, match="'enable_shared_cache' is an Olive option.*shared folder"):
        load_workflow(_workflow(enable_shared_cache=True))


def test_refused_pass_says_why():
    with pytest.raises(OlivepressError, match="Olive pass 'OpenVINOConversion' is not available.*OpenVINO"):
        load_workflow(
            {"input_model": {"model_path": "default"}, "passes": {"o": {"type": "openvinoconversion"}}}
        )


def test_onnx_conversion_options_real_configs_pass_are_accepted(caplog):
    with caplog.at_level(logging.WARNING, logger="olivepress"):
        workflow = load_workflow(
            {
                "input_model": {"model_path": "default"},
                "passes": {
                    "c": {
                        "type": "OnnxConversion",
                        "save_metadata_for_token_generation": True,
                        "target_opset": 17,
                    }
                },
            }
        )
    assert workflow.flows[0][0].config.target_opset == 17
    assert any("save_metadata_for_token_generation" in r.getMessage() for r in caplog.records)


def test_olive_quantizer_spellings_map_onto_the_options():
    workflow = load_workflow(
        {
            "input_model": {"model_path": "default"},
            "passes": {
                "r": {
                    "type": "rtn",
                    "bits": 8,
                    "lm_head": True,
                    "embeds": True,
                    "overrides": {"model.embed_tokens": {"bits": 8, "symmetric": True}},
                }
            },
        }
    )
    config = workflow.flows[0][0].config
    assert config.include_lm_head and config.embeds
    assert config.overrides["model.embed_tokens"].sym is True


def test_model_builder_olive_options_become_builder_extra_options():
    workflow = load_workflow(
        {
            "input_model": {"model_path": "default"},
            "passes": {
                "m": {
                    "type": "ModelBuilder",
                    "int4_is_symmetric": True,
                    "int4_op_types_to_quantize": ["MatMul"],
                }
            },
        }
    )
    assert workflow.flows[0][0].config.extra_options == {
        "is_symmetric": True,
        "op_types_to_quantize": "MatMul",
    }


@pytest.mark.parametrize(
    ("config", "match"),
    [
        (
            _workflow(no_artifact=True),
            "unknown key 'no_artifact' at the top level.*did you mean 'no_artifacts'",
        ),
        (
            {"input_model": {"model_path": "default"}, "passes": {"r": {"type": "rtn", "lm_haed": True}}},
            "unknown key 'lm_haed'.*did you mean 'lm_head'",
        ),
        (
            {"input_model": {"model_path": "default"}, "passes": {"s": {"type": "SelectiveMixedPrecison"}}},
            "unknown pass type 'SelectiveMixedPrecison'.*did you mean 'SelectiveMixedPrecision'",
        ),
    ],
)
def test_typos_still_get_did_you_mean(config, match):
    with pytest.raises(OlivepressError, match=match):
        load_workflow(config)


def test_unknown_graph_surgeon_is_refused_by_name():
    with pytest.raises(OlivepressError, match="Olive's graph surgeon 'RemoveQDQ' is not available"):
        load_workflow(
            {
                "input_model": {"model_path": "default"},
                "passes": {"t": {"type": "GraphSurgeries", "surgeries": [{"surgeon": "RemoveQDQ"}]}},
            }
        )


def test_relative_goals_need_the_input_model_evaluated():
    evaluator = {
        "metrics": [
            {
                "name": "ppl",
                "type": "perplexity",
                "sub_types": [
                    {"name": "perplexity", "goal": {"type": "percent-max-degradation", "value": 10}}
                ],
            }
        ]
    }
    with pytest.raises(OlivepressError, match="evaluate_input_model is false"):
        load_workflow(_workflow(evaluator=evaluator, evaluate_input_model=False))


def test_olive_spellings_of_quantizer_options_and_their_contradictions():
    import pytest
    from pydantic import ValidationError

    from olivepress.quant.options import QuantOptions

    options = QuantOptions.model_validate({"w_bit": 8, "q_group_size": 64, "lm_head": True})
    assert (options.bits, options.group_size, options.include_lm_head) == (8, 64, True)
    with pytest.raises(ValidationError, match="'lm_head' and 'include_lm_head' are the same option"):
        QuantOptions.model_validate({"lm_head": True, "include_lm_head": False})
