"""Training arguments, by their Hugging Face `TrainingArguments` names.

The fields below are the arguments olivepress's training loop honours. Their defaults are
Hugging Face's except where a comment says why not. Other `TrainingArguments` names that
only make sense for the HF `Trainer` (checkpoint saving, hub pushes, distributed settings,
reporting) are accepted and ignored with a warning, so configs written for Olive load
unchanged; any other name is an error that names the closest known argument.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from olivepress.errors import OlivepressError

# TrainingArguments names (current and older) that have no effect in olivepress's loop:
# olivepress saves one adapter at the end into the pass's output, and several processes are
# the pass's num_processes (torch.distributed), not the HF Trainer's ddp_* / fsdp settings.
IGNORED_HF_ARGS = frozenset(
    {
        "output_dir",
        "overwrite_output_dir",
        "do_train",
        "do_eval",
        "do_predict",
        "run_name",
        "project",
        "report_to",
        "logging_dir",
        "logging_strategy",
        "logging_first_step",
        "logging_nan_inf_filter",
        "log_level",
        "log_level_replica",
        "log_on_each_node",
        "disable_tqdm",
        "include_num_input_tokens_seen",
        "save_strategy",
        "save_steps",
        "save_total_limit",
        "save_safetensors",
        "save_only_model",
        "save_on_each_node",
        "load_best_model_at_end",
        "metric_for_best_model",
        "greater_is_better",
        "push_to_hub",
        "hub_model_id",
        "hub_strategy",
        "hub_token",
        "hub_private_repo",
        "hub_always_push",
        "hub_revision",
        "resume_from_checkpoint",
        "ignore_data_skip",
        "dataloader_num_workers",
        "dataloader_pin_memory",
        "dataloader_persistent_workers",
        "dataloader_prefetch_factor",
        "dataloader_drop_last",
        "remove_unused_columns",
        "label_names",
        "length_column_name",
        "ddp_find_unused_parameters",
        "ddp_bucket_cap_mb",
        "ddp_broadcast_buffers",
        "ddp_backend",
        "ddp_timeout",
        "fsdp",
        "fsdp_config",
        "deepspeed",
        "local_rank",
        "tf32",
        "use_cpu",
        "no_cuda",
        "torch_compile",
        "torch_compile_backend",
        "torch_compile_mode",
        "eval_accumulation_steps",
        "prediction_loss_only",
        "skip_memory_metrics",
        "auto_find_batch_size",
        "include_for_metrics",
        "batch_eval_metrics",
        "eval_do_concat_batches",
        "torch_empty_cache_steps",
        "average_tokens_across_devices",
        "use_cache",
        "debug",
        "bf16_full_eval",
        "fp16_full_eval",
    }
)

SCHEDULERS = Literal[
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "inverse_sqrt",
    "cosine_with_min_lr",
    "warmup_stable_decay",
]
# The AdamW spellings of TrainingArguments.optim all mean torch's AdamW here (the paged and
# 8-bit ones save GPU memory, which a CPU run does not need to); sgd is plain SGD.
ADAMW_OPTIMIZERS = (
    "adamw_torch",
    "adamw_torch_fused",
    "adamw_hf",
    "adamw",
    "paged_adamw_32bit",
    "paged_adamw_8bit",
    "adamw_8bit",
    "adamw_bnb_8bit",
)
OPTIMIZERS = (*ADAMW_OPTIMIZERS, "sgd")


class TrainingArgs(BaseModel):
    """How to train: Hugging Face names, olivepress defaults where they differ (see comments)."""

    model_config = ConfigDict(extra="forbid")

    seed: int = Field(42, description="Seed for adapter initialisation and dropout.")
    data_seed: int | None = Field(None, description="Seed for data order and the eval split (default: seed).")
    max_steps: int = Field(-1, description="Optimizer steps to take; -1: as many as num_train_epochs needs.")
    num_train_epochs: float = Field(
        3.0, gt=0, description="Passes over the training data (used when max_steps is -1)."
    )
    # Sequences per micro-batch. Like HF's default; on a CPU it keeps matrix products large
    # enough to run near peak without much padding (batches are grouped by length).
    per_device_train_batch_size: int = Field(8, ge=1, description="Sequences per micro-batch.")
    per_device_eval_batch_size: int = Field(8, ge=1, description="Sequences per evaluation batch.")
    gradient_accumulation_steps: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    # On, as in Olive: training then holds one decoder layer's activations at a time instead of
    # every layer's (Qwen2.5-0.5B, batch 8: see docs/benchmarks.md), for about 30% more compute.
    gradient_checkpointing: bool = Field(
        True, description="Recompute activations in backward: less memory, ~30% slower."
    )
    # 2e-4 rather than HF's 5e-5: the usual rate for low-rank adapters, which start at zero.
    learning_rate: float = Field(2e-4, gt=0, description="Peak learning rate.")
    lr_scheduler_type: SCHEDULERS = Field("linear", description="Learning-rate schedule after warmup.")
    lr_scheduler_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Extra arguments of the schedule."
    )
    warmup_steps: int = Field(0, ge=0, description="Steps of linear warmup.")
    warmup_ratio: float = Field(
        0.0, ge=0, lt=1, description="Warmup as a fraction of all steps (used when warmup_steps is 0)."
    )
    weight_decay: float = Field(
        0.0, ge=0, description="AdamW weight decay (not applied to biases and norms)."
    )
    adam_beta1: float = Field(0.9, ge=0, lt=1)
    adam_beta2: float = Field(0.999, ge=0, lt=1)
    adam_epsilon: float = Field(1e-8, gt=0)
    optim: str = Field("adamw_torch", description=f"Optimizer: {', '.join(OPTIMIZERS)}.")
    max_grad_norm: float = Field(1.0, ge=0, description="Clip the gradient norm to this (0: no clipping).")
    # 10 rather than 500: CPU runs are short, and the log is what shows the loss falling.
    logging_steps: int = Field(10, ge=1, description="Log the training loss every this many steps.")
    # None: evaluate every eval_steps steps when there is eval data (HF needs 'steps' spelled out).
    eval_strategy: Literal["no", "steps", "epoch"] | None = Field(
        None,
        description="When to compute eval loss: no, steps, epoch (default: steps when there is eval data).",
    )
    eval_steps: int | None = Field(
        None, ge=1, description="Evaluate every this many steps (default: logging_steps)."
    )
    eval_on_start: bool = Field(
        True, description="Compute eval loss before training too, for a before/after figure."
    )
    # True rather than False: batches of similar lengths waste almost nothing on padding.
    group_by_length: bool = Field(True, description="Batch sequences of similar length together.")
    bf16: bool | None = Field(
        None, description="bf16 autocast; default: on where the CPU computes bf16 natively."
    )
    fp16: bool = Field(False, description="fp16 autocast (GPU only).")
    label_smoothing_factor: float = Field(0.0, ge=0, lt=1)
    neftune_noise_alpha: float | None = Field(
        None, ge=0, description="NEFTune: noise added to embeddings in training."
    )
    gradient_checkpointing_kwargs: dict[str, Any] | None = Field(
        None, description="Arguments of gradient checkpointing."
    )
    full_determinism: bool = Field(
        False,
        description="Keep the thread count fixed (all cores), so runs with the same seed are bitwise equal.",
    )

    _ignored: dict[str, Any] = PrivateAttr(default_factory=dict)

    @model_validator(mode="wrap")
    @classmethod
    def _hf_spellings(cls, data: Any, handler):
        if not isinstance(data, dict):  # an instance already validated keeps what it has
            return handler(data)
        data = dict(data)
        if "evaluation_strategy" in data:  # the name before transformers 4.41
            old = data.pop("evaluation_strategy")
            if data.setdefault("eval_strategy", old) != old:
                raise OlivepressError(
                    "training_args sets evaluation_strategy and eval_strategy to different values; "
                    "keep eval_strategy"
                )
        ignored = {key: data.pop(key) for key in list(data) if key in IGNORED_HF_ARGS}
        args = handler(data)
        args._ignored = ignored
        return args

    @field_validator("max_steps")
    @classmethod
    def _steps(cls, value: int) -> int:
        if value == 0 or value < -1:
            raise OlivepressError(
                f"max_steps is {value}; give a positive number of optimizer steps, or -1 to train "
                "num_train_epochs epochs"
            )
        return value

    @field_validator("optim")
    @classmethod
    def _optimizer(cls, value: str) -> str:
        if value not in OPTIMIZERS:
            from olivepress.errors import did_you_mean

            raise OlivepressError(
                f"optim '{value}' is not supported{did_you_mean(value, OPTIMIZERS)}; use one of "
                f"{', '.join(OPTIMIZERS)}"
            )
        return value

    @property
    def ignored(self) -> dict[str, Any]:
        """HF arguments that were given but have no effect here (the pass warns about them)."""
        return dict(self._ignored)

    @property
    def order_seed(self) -> int:
        return self.seed if self.data_seed is None else self.data_seed


def training_arg_names() -> list[str]:
    """Every name `training_args` accepts: the honoured ones, then the ignored HF ones."""
    return [*TrainingArgs.model_fields, "evaluation_strategy", *sorted(IGNORED_HF_ARGS)]
