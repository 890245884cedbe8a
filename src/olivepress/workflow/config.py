"""The workflow config schema (the flat form; workflow/normalize.py turns the seed's nested
form into this one before validation)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from olivepress.data.config import DataConfig
from olivepress.evaluate.config import EvaluatorConfig
from olivepress.share.config import PackagingConfig
from olivepress.workflow.search_config import SearchStrategyConfig

SUPPORTED_SYSTEMS = ("LocalSystem",)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class InputModelConfig(_Strict):
    type: Literal["HfModel", "OnnxModel"] = Field(
        "HfModel", description="HfModel (also PyTorchModel) for a Hugging Face / GGUF model; OnnxModel for an ONNX folder."
    )
    model_path: str | None = Field(
        None, description="Local folder, .gguf file, Hugging Face id in the local cache, or 'default' (embedded SmolLM2)."
    )
    adapter_path: str | None = Field(None, description="A PEFT adapter folder for this model.")
    task: str = Field("text-generation", description="The model's task.")
    load_kwargs: dict[str, Any] = Field(default_factory=dict, description="Extra from_pretrained arguments.")

    @property
    def is_onnx(self) -> bool:
        return self.type == "OnnxModel"


class AcceleratorConfig(_Strict):
    device: Literal["cpu", "gpu", "npu"] = "cpu"
    execution_providers: list[str] | None = None


class SystemConfig(_Strict):
    type: Literal["LocalSystem"] = Field("LocalSystem", description="Only LocalSystem: olivepress runs workflows on this machine.")
    accelerators: list[AcceleratorConfig] = Field(default_factory=list)

    @field_validator("accelerators", mode="before")
    @classmethod
    def _accept_device_names(cls, value: Any) -> Any:
        # The seed writes accelerators as bare device names: ["gpu"].
        if isinstance(value, list):
            return [{"device": item} if isinstance(item, str) else item for item in value]
        return value


class WorkflowConfig(_Strict):
    """A workflow: an input model, passes run in order, and where the results go."""

    input_model: InputModelConfig = Field(default_factory=InputModelConfig)
    systems: dict[str, SystemConfig] = Field(default_factory=dict)
    data_configs: list[DataConfig] = Field(default_factory=list)
    passes: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Name -> {type: PassType, ...options}; run in the order written."
    )
    pass_flows: list[list[str]] | None = Field(None, description="Sequences of pass names to run; default: all passes in order.")
    output_dir: str = Field("olivepress-output", description="Where the final model and footprint.json go.")
    cache_dir: str = Field(".olivepress-cache", description="Where finished passes are cached.")
    clean_cache: bool = Field(False, description="Empty the cache before running.")
    log_severity_level: int = Field(1, ge=0, le=4, description="0 debug, 1 info, 2 warning, 3 error, 4 critical.")
    search_strategy: Literal[False] | SearchStrategyConfig | None = Field(
        None, description="false (or absent): run each pass flow once; else search pass options given as choices."
    )
    evaluators: dict[str, EvaluatorConfig] = Field(default_factory=dict, description="Named evaluators: metrics with goals.")
    evaluator: str | EvaluatorConfig | None = Field(
        None, description="The evaluator (a name under evaluators, or inline) that measures the input and output models."
    )
    evaluate_input_model: bool = Field(
        True, description="Measure the input model with the evaluator too (relative goals need it)."
    )
    allow_user_code: bool = Field(False, description="Run Python the config names (user_script, custom metrics); same as --allow-user-code.")
    host: str | None = Field(None, description="Name of the system under `systems` that runs the passes.")
    target: str | None = Field(None, description="Name of the system under `systems` the model is optimised for.")
    execution_providers: list[str] | None = Field(None, description="Execution providers of the target.")
    packaging_config: PackagingConfig | list[PackagingConfig] | None = Field(
        None, description="Package the output at the end: Zipfile (an archive in the output folder) or MLflowModels (also registered)."
    )
