"""Workflow configs: both shapes, every seed 001 snippet, and errors a person can act on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from olivepress.errors import OlivepressError
from olivepress.workflow.config import WorkflowConfig
from olivepress.workflow.load import load_workflow, read_config_file
from olivepress.workflow.normalize import normalize_workflow

SEED = Path(__file__).parent / "seed001"


def seed(name: str) -> dict:
    return json.loads((SEED / name).read_text())


def test_seed_local_data_config_is_flattened():
    config = WorkflowConfig.model_validate(normalize_workflow(seed("data_local.json")))
    data = config.data_configs[0]
    assert data.name == "dataset_default_train"
    assert data.load_dataset_config.data_files == "dataset/dataset-classification.json"
    assert data.pre_process_data_config.text_cols == ["phrase", "tone"]
    assert data.pre_process_data_config.source_max_len == 2048
    assert data.pre_process_data_config.use_attention_mask is False


def test_seed_cloud_data_config_says_cloud_stores_are_not_read():
    with pytest.raises(OlivepressError, match="azureml_datastore.*local data files"):
        normalize_workflow(seed("data_cloud.json"))


def test_seed_azureml_systems_name_what_is_supported():
    with pytest.raises(OlivepressError, match="system 'aml' has type 'AzureML'.*LocalSystem"):
        load_workflow({**seed("systems_azureml.json"), "input_model": {"model_path": "x"}})


def test_seed_local_input_model_maps_hf_config():
    config = WorkflowConfig.model_validate(normalize_workflow(seed("input_model_local.json")))
    assert config.input_model.model_path == "model-cache/microsoft/phi-3-mini"
    assert config.input_model.task == "text-generation"
    assert config.input_model.load_kwargs == {"trust_remote_code": True}


def test_seed_azureml_input_model_is_a_clear_error():
    with pytest.raises(OlivepressError, match="azureml_registry_model.*Azure ML asset"):
        normalize_workflow(seed("input_model_azureml.json"))


def test_seed_lora_pass_snippet_keeps_every_option():
    config = WorkflowConfig.model_validate(normalize_workflow(seed("passes_lora.json")))
    lora = config.passes["lora"]
    assert lora["type"] == "LoRA"
    assert lora["lora_r"] == 64 and lora["training_args"]["max_grad_norm"] == 0.3


def test_seed_merge_and_builder_passes_plan():
    workflow = load_workflow(seed("passes_merge_builder.json"))
    names = [(p.name, p.spec.name) for p in workflow.flows[0]]
    assert names == [("merge_adapter_weights", "MergeAdapterWeights"), ("builder", "ModelBuilder")]
    assert workflow.flows[0][1].config.precision == "int4"


def test_seed_engine_snippet_needs_its_system():
    with pytest.raises(OlivepressError, match="host 'aml' is not defined under systems"):
        load_workflow(seed("engine.json"))


def test_seed_engine_with_a_local_system_targets_its_provider():
    raw = {
        **seed("engine.json"),
        "systems": {"aml": {"type": "LocalSystem", "config": {"accelerators": ["gpu"]}}},
    }
    workflow = load_workflow(raw)
    assert workflow.config.output_dir == "../model-cache/models/phi3-finetuned"
    assert workflow.config.log_severity_level == 0
    assert (workflow.device, workflow.execution_provider) == ("gpu", "CUDAExecutionProvider")


def test_whole_seed_config_in_the_nested_shape(tmp_path):
    raw = {
        **seed("input_model_local.json"),
        **seed("data_local.json"),
        **seed("passes_merge_builder.json"),
        "systems": {"local_system": {"type": "LocalSystem", "config": {"accelerators": [{"device": "cpu"}]}}},
        "engine": {
            "search_strategy": False,
            "cache_dir": "cache",
            "output_dir": "out",
            "host": "local_system",
            "target": "local_system",
        },
    }
    path = tmp_path / "olive-config.json"
    path.write_text(json.dumps(raw))
    workflow = load_workflow(path)
    assert workflow.execution_provider == "CPUExecutionProvider"
    assert workflow.config.cache_dir == "cache"


def test_flat_shape_is_the_same_workflow_as_nested():
    flat = {
        "input_model": {"type": "HfModel", "model_path": "m", "load_kwargs": {"trust_remote_code": False}},
        "passes": {"builder": {"type": "ModelBuilder", "precision": "fp32", "int4_block_size": 64}},
        "output_dir": "out",
        "cache_dir": "cache",
    }
    nested = {
        "input_model": {
            "type": "PyTorchModel",
            "config": {
                "hf_config": {"model_name": "m", "from_pretrained_args": {"trust_remote_code": False}}
            },
        },
        "passes": {
            "builder": {"type": "ModelBuilder", "config": {"precision": "fp32", "int4_block_size": 64}}
        },
        "engine": {"output_dir": "out", "cache_dir": "cache"},
    }
    a, b = load_workflow(flat), load_workflow(nested)
    assert a.config.input_model == b.config.input_model
    assert a.flows[0][0].config == b.flows[0][0].config
    assert (a.config.output_dir, a.config.cache_dir) == (b.config.output_dir, b.config.cache_dir)


def test_yaml_config(tmp_path):
    path = tmp_path / "w.yaml"
    path.write_text(
        "input_model:\n  type: HfModel\n  model_path: m\npasses:\n  b:\n    type: ModelBuilder\n    "
        "precision: fp16\n"
    )
    assert load_workflow(path).flows[0][0].config.precision == "fp16"


def test_pass_flows_choose_and_order_passes():
    raw = {
        "passes": {
            "merge": {"type": "MergeAdapterWeights"},
            "b32": {"type": "ModelBuilder", "precision": "fp32"},
        },
        "pass_flows": [["b32"], ["merge", "b32"]],
    }
    flows = load_workflow(raw).flows
    assert [[p.name for p in flow] for flow in flows] == [["b32"], ["merge", "b32"]]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"passes": {"b": {"type": "ModelBulder"}}},
            "unknown pass type 'ModelBulder' \\(did you mean 'ModelBuilder'\\?\\)",
        ),
        ({"passes": {"b": {"precision": "int4"}}}, "pass 'b' has no 'type'"),
        ({"output_dri": "x"}, "unknown key 'output_dri' at the top level \\(did you mean 'output_dir'\\?\\)"),
        (
            {"passes": {"b": {"type": "ModelBuilder", "precison": "int4"}}},
            "unknown key 'precison' in passes.b \\(did you mean 'precision'\\?\\)",
        ),
        (
            {"input_model": {"type": "HfModel", "model_pth": "x"}},
            "unknown key 'model_pth' in input_model \\(did you mean 'model_path'\\?\\)",
        ),
        (
            {"passes": {"b": {"type": "ModelBuilder", "precision": "int3"}}},
            "passes.b.precision: Input should be",
        ),
        ({"passes": {"b": {"type": "ModelBuilder", "int4_block_size": "big"}}}, "passes.b.int4_block_size"),
        ({"log_severity_level": "loud"}, "log_severity_level: Input should be a valid integer"),
        ({"pass_flows": [["nope"]]}, "pass_flows names pass 'nope'"),
        (
            {"engine": {"output_dir": "a"}, "output_dir": "b"},
            "'output_dir' is set both at the top level and in 'engine'",
        ),
        ({"systems": {"d": {"type": "Docker"}}}, "system 'd' has type 'Docker'.*LocalSystem"),
    ],
)
def test_bad_configs_get_one_clear_line(raw, message):
    with pytest.raises(OlivepressError, match=message) as info:
        load_workflow(raw)
    assert "\n" not in str(info.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(OlivepressError, match="config file .*nope.json does not exist"):
        read_config_file(tmp_path / "nope.json")


def test_invalid_json_names_the_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{\n  "passes": {\n    "b": {"type": "ModelBuilder",}\n  }\n}\n')
    with pytest.raises(OlivepressError, match="not valid JSON at line 3"):
        read_config_file(path)


def test_invalid_yaml_names_the_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("passes:\n  b:\n    type: ModelBuilder\n   precision: [int4\n")
    with pytest.raises(OlivepressError, match="not valid YAML at line 4"):
        read_config_file(path)


def test_json_schema_spells_out_pass_options():
    from olivepress.workflow.schema import workflow_json_schema

    schema = workflow_json_schema()
    variants = schema["properties"]["passes"]["additionalProperties"]["oneOf"]
    builder = next(v for v in variants if v["title"] == "ModelBuilder")
    assert builder["properties"]["precision"]["enum"] == ["fp32", "fp16", "bf16", "int8", "int4"]
    assert builder["additionalProperties"] is False
    assert "output_dir" in schema["properties"]
