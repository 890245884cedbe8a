"""The workflow config schema (the flat form; workflow/normalize.py turns the seed's nested
form into this one before validation)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from olivepress.data.config import DataConfig
from olivepress.evaluate.config import EvaluatorConfig
from olivepress.share.config import PackagingConfig
from olivepress.workflow.search_config import SearchStrategyConfig

SUPPORTED_SYSTEMS = ("LocalSystem", "Ray")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class InputModelConfig(_Strict):
    type: Literal["HfModel", "OnnxModel"] = Field(
        "HfModel",
        description=(
            "HfModel (also PyTorchModel) for a Hugging Face / GGUF model; OnnxModel for an ONNX folder."
        ),
    )
    model_path: str | None = Field(
        None,
        description=(
            "Local folder, .gguf file, Hugging Face id in the local cache, or 'default' (embedded SmolLM2)."
        ),
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


class ResourcesPerTrial(_Strict):
    """What one search candidate (its passes and its evaluation) reserves on a Ray node."""

    num_cpus: float = Field(1, gt=0, description="CPU cores per candidate; Ray runs as many at once as fit.")
    num_gpus: float = Field(0, ge=0, description="GPUs per candidate (fractions share a GPU).")


class SystemConfig(_Strict):
    type: Literal["LocalSystem", "Ray"] = Field(
        "LocalSystem", description="LocalSystem: this machine. Ray: a Ray cluster runs a search's candidates."
    )
    accelerators: list[AcceleratorConfig] = Field(default_factory=list)
    address: str | None = Field(
        None,
        description="Ray only: 'ray://host:10001', 'host:6379', 'auto' (a running cluster), 'local' "
        "(a new one in this process); absent: RAY_ADDRESS, else a running local cluster, else a new one.",
    )
    resources_per_trial: ResourcesPerTrial | None = Field(
        None, description="Ray only: what each candidate reserves."
    )

    @model_validator(mode="after")
    def _ray_keys_need_ray(self) -> SystemConfig:
        if self.type != "Ray" and (self.address is not None or self.resources_per_trial is not None):
            raise ValueError("address and resources_per_trial are options of a Ray system; set type Ray")
        return self

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
    pass_flows: list[list[str]] | None = Field(
        None, description="Sequences of pass names to run; default: all passes in order."
    )
    output_dir: str = Field("olivepress-output", description="Where the final model and footprint.json go.")
    cache_dir: str = Field(".olivepress-cache", description="Where finished passes are cached.")
    clean_cache: bool = Field(False, description="Empty the cache before running.")
    log_severity_level: int = Field(
        1, ge=0, le=4, description="0 debug, 1 info, 2 warning, 3 error, 4 critical."
    )
    search_strategy: Literal[False] | SearchStrategyConfig | None = Field(
        None,
        description="false (or absent): run each pass flow once; else search pass options given as choices.",
    )
    evaluators: dict[str, EvaluatorConfig] = Field(
        default_factory=dict, description="Named evaluators: metrics with goals."
    )
    evaluator: str | EvaluatorConfig | None = Field(
        None,
        description=(
            "The evaluator (a name under evaluators, or inline) that measures the input and output models."
        ),
    )
    evaluate_input_model: bool = Field(
        True, description="Measure the input model with the evaluator too (relative goals need it)."
    )
    allow_user_code: bool = Field(
        False,
        description="Run Python the config names (user_script, custom metrics); same as --allow-user-code.",
    )
    host: str | None = Field(
        None, description="Name of the system under `systems` that runs the passes (Ray: the candidates)."
    )
    target: str | None = Field(
        None, description="Name of the system under `systems` the model is optimised for."
    )
    execution_providers: list[str] | None = Field(None, description="Execution providers of the target.")
    packaging_config: PackagingConfig | list[PackagingConfig] | None = Field(
        None,
        description=(
            "Package the output at the end: Zipfile (an archive in the output folder) or MLflowModels "
            "(also registered)."
        ),
    )
