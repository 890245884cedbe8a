"""Options of the adapter-training passes (LoRA, QLoRA, DoRA, LoHa, LoKr), as in seed 001.

Every method takes the data and training options of `AdapterPassConfig`; each method's
module adds its own (rank, alpha, dropout, quantization). The seed's spellings work as
written: `lora_r` / `r`, `lora_alpha` / `alpha`, `training_args` with Hugging Face names.
`num_processes` (and `nnodes`, `node_rank`, `master_addr`, `master_port` for several
machines) trains data-parallel through torch.distributed; see docs/distributed.md.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, field_validator, model_validator

from olivepress.data.config import DataConfig
from olivepress.errors import OlivepressError
from olivepress.passes.base import PassConfig
from olivepress.train.args import TrainingArgs

# Other spellings of option names (PEFT's and Olive's) -> the names used here.
OPTION_ALIASES = {"r": "lora_r", "alpha": "lora_alpha"}


class AdapterPassConfig(PassConfig):
    """Data and training options every adapter method takes."""

    train_data_config: str | DataConfig = Field(
        ...,
        description="Training data: the name of an entry in data_configs, or a data config written inline.",
    )
    eval_data_config: str | DataConfig | None = Field(
        None,
        description=(
            "Evaluation data (name or inline); default: split off eval_dataset_size of the training data."
        ),
    )
    eval_dataset_size: float | int | None = Field(
        None,
        description=(
            "Hold this much of the training data out for eval loss: a fraction like 0.1 or a count like 20."
        ),
    )
    target_modules: list[str] | None = Field(
        None,
        description="Short names of the Linear layers to adapt, e.g. "
        "[q_proj, v_proj]; default: every attention "
        "and MLP "
        "projection (qkv_proj, o_proj, gate_up_proj, down_proj on Phi-3).",
    )
    modules_to_save: list[str] | None = Field(
        None, description="Modules trained in full and saved with the adapter."
    )
    training_args: TrainingArgs = Field(
        default_factory=TrainingArgs, description="Hugging Face TrainingArguments names."
    )
    num_processes: int = Field(
        1,
        description="Training processes on this machine (data-parallel through torch.distributed: gloo "
        "on CPU, nccl on GPU); the global batch stays per_device_train_batch_size x "
        "gradient_accumulation_steps.",
    )
    nnodes: int = Field(
        1, description="Machines training together; each runs the same pass with its own node_rank."
    )
    node_rank: int = Field(0, description="This machine's index among nnodes; node 0 writes the adapter.")
    master_addr: str | None = Field(
        None, description="Address of node 0 that every machine can reach (nnodes > 1)."
    )
    master_port: int = Field(29500, ge=1, le=65535, description="Port on master_addr where machines meet.")

    OLIVE_ALIASES: ClassVar[dict[str, str]] = OPTION_ALIASES

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for alias, name in OPTION_ALIASES.items():
            if alias in data and name in cls.model_fields:
                if name in data and data[name] != data[alias]:
                    raise OlivepressError(
                        f"'{alias}' and '{name}' are the same option with different values; keep '{name}'"
                    )
                data[name] = data.pop(alias)
        if isinstance(data.get("target_modules"), str):  # "q_proj,v_proj" as typed on a command line
            data["target_modules"] = [
                name.strip() for name in data["target_modules"].split(",") if name.strip()
            ]
        return data

    @field_validator("num_processes", "nnodes")
    @classmethod
    def _at_least_one(cls, value: int, info) -> int:
        if value < 1:
            raise OlivepressError(
                f"{info.field_name} is {value}; give 1 or more ({info.field_name} 2 trains on two "
                f"{'processes' if info.field_name == 'num_processes' else 'machines'})"
            )
        return value

    @model_validator(mode="after")
    def _machines(self) -> AdapterPassConfig:
        if not 0 <= self.node_rank < self.nnodes:
            raise OlivepressError(
                f"node_rank is {self.node_rank} but nnodes is {self.nnodes}; "
                f"number the machines 0 to {self.nnodes - 1}"
            )
        if self.nnodes > 1 and not self.master_addr:
            raise OlivepressError(
                f"nnodes is {self.nnodes} but master_addr is not set; give the address of node 0 that every "
                "machine can reach (and the same master_port on every machine)"
            )
        return self


class LowRankConfig(AdapterPassConfig):
    """Rank and scale of a low-rank adapter (the LoRA family)."""

    lora_r: int = Field(16, ge=1, description="Rank of the update (also 'r').")
    lora_alpha: float = Field(
        32, gt=0, description="Scale: the update is multiplied by lora_alpha / lora_r (also 'alpha')."
    )


class LycorisConfig(LowRankConfig):
    """The LyCORIS methods' options (LoHa, LoKr): a smaller default rank, and dropout per rank
    and per whole adapted layer instead of on the adapter's input."""

    lora_r: int = Field(8, ge=1, description="Rank of the update's low-rank factors (also 'r').")
    lora_alpha: float = Field(
        16, gt=0, description="Scale: the update is multiplied by lora_alpha / lora_r (also 'alpha')."
    )
    rank_dropout: float = Field(
        0.0, ge=0, lt=1, description="Dropout on each rank of the update, in training."
    )
    module_dropout: float = Field(
        0.0, ge=0, lt=1, description="Probability of switching a whole adapted layer off in a step."
    )
