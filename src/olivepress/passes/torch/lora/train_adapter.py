"""What every adapter method shares: data → base model → PEFT adapter → training → adapter folder."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from olivepress.data.config import DataConfig
from olivepress.errors import OlivepressError
from olivepress.models.handles import HfModel
from olivepress.models.loading import load_causal_lm, load_tokenizer
from olivepress.passes.base import PassContext
from olivepress.passes.torch.lora.config import AdapterPassConfig
from olivepress.passes.torch.lora.targets import resolve_targets
from olivepress.train.launch import Processes
from olivepress.train.world import World

if TYPE_CHECKING:
    from peft import PeftConfig
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from olivepress.train.loop import TrainResult

ADAPTER_DIR = "adapter"
TRAINING_LOG = "training_log.jsonl"


@dataclass(frozen=True)
class Method:
    """One adapter method: its name, its PEFT config, and how it loads the base (QLoRA quantizes it)."""

    name: str
    peft_config: Callable[[Any, list[str]], PeftConfig]
    load_base: Callable[[HfModel, Any, PassContext], PreTrainedModel] = lambda model, config, ctx: (
        load_causal_lm(model)
    )


@dataclass
class TrainingData:
    train: list[dict[str, list[int]]]
    eval: list[dict[str, list[int]]]


def train_adapter(
    model: HfModel, config: AdapterPassConfig, out_dir: Path, ctx: PassContext, method: Method
) -> HfModel:
    """Train `method`'s adapter on `model`; the adapter goes to `out_dir/adapter`."""
    if model.adapter_path:
        raise OlivepressError(
            f"the input model already has an adapter ({model.adapter_path}); fold it in first with a "
            "MergeAdapterWeights pass, or drop adapter_path to train a new adapter on the base"
        )
    args = config.training_args
    if args.ignored:
        ctx.log.warning(
            "training_args %s have no effect in olivepress (it saves one adapter at the end) and are ignored",
            ", ".join(sorted(args.ignored)),
        )
    if processes_of(config).world_size > 1:
        from olivepress.passes.torch.lora.processes import train_in_processes

        return train_in_processes(model, config, out_dir, ctx, method)
    result = train_here(model, config, out_dir, ctx, method)
    log_summary(ctx, method.name, result)
    adapter = str(out_dir / ADAPTER_DIR)
    return HfModel(path=model.path, adapter_path=adapter, task=model.task, load_kwargs=model.load_kwargs)


def processes_of(config: AdapterPassConfig) -> Processes:
    return Processes(
        per_node=config.num_processes,
        nnodes=config.nnodes,
        node_rank=config.node_rank,
        master_addr=config.master_addr,
        master_port=config.master_port,
    )


def train_here(
    model: HfModel,
    config: AdapterPassConfig,
    out_dir: Path,
    ctx: PassContext,
    method: Method,
    world: World | None = None,
) -> TrainResult:
    """Load, adapt and train in this process (alone, or as one process of `world`); the first
    process saves the adapter to `out_dir/adapter`."""
    import torch
    from peft import get_peft_model

    world = world or World()
    args = config.training_args
    # Data first: a bad file or template fails in a second, before the model is loaded.
    tokenizer = load_tokenizer(model)
    data = training_data(config, tokenizer, ctx, seed=args.order_seed)
    _quiet_loading(ctx)
    base = method.load_base(model, config, ctx)
    base.config.use_cache = False
    targets = resolve_targets(base, config.target_modules)
    torch.manual_seed(args.seed)  # the adapter's initial weights
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # PEFT asks transformers a deprecated question
        peft_model = get_peft_model(base, method.peft_config(config, targets))
    peft_model.peft_config["default"].base_model_name_or_path = model.path
    trainable, total = peft_model.get_nb_trainable_parameters()
    ctx.log.info(
        "%s on %s: %s trainable parameters (%.2f%% of %s) in %s",
        method.name,
        Path(model.path).name,
        f"{trainable:,}",
        100 * trainable / total,
        f"{total:,}",
        ", ".join(targets),
    )

    from olivepress.train.loop import train

    adapter_dir = out_dir / ADAPTER_DIR
    result = train(
        peft_model,
        data.train,
        data.eval,
        args,
        pad_id=pad_token_id(tokenizer),
        log_path=adapter_dir / TRAINING_LOG,
        world=world,
    )
    if world.is_main:
        peft_model.save_pretrained(adapter_dir)
    return result


def training_data(
    config: AdapterPassConfig, tokenizer: PreTrainedTokenizerBase, ctx: PassContext, seed: int
) -> TrainingData:
    """Token sequences to train and evaluate on; eval comes from eval_data_config or a split."""
    from olivepress.data import load_records, render_texts, train_eval_split, training_examples

    train_config = ctx.data_config(config.train_data_config)
    texts = render_texts(load_records(train_config), train_config.pre_process_data_config, tokenizer)
    eval_config: DataConfig = train_config
    eval_texts: list[str] = []
    if config.eval_data_config is not None:
        if config.eval_dataset_size:
            ctx.log.warning("eval_dataset_size is ignored: eval_data_config gives the eval data")
        eval_config = ctx.data_config(config.eval_data_config)
        eval_texts = render_texts(load_records(eval_config), eval_config.pre_process_data_config, tokenizer)
    elif config.eval_dataset_size:
        texts, eval_texts = train_eval_split(texts, config.eval_dataset_size, seed)
    train = _usable(training_examples(texts, tokenizer, train_config.pre_process_data_config))
    if not train:
        raise OlivepressError(
            f"data config '{train_config.name}' gives no text to train on (every record renders to an "
            "empty text); "
            "check the text template or field"
        )
    evaluation = (
        _usable(training_examples(eval_texts, tokenizer, eval_config.pre_process_data_config))
        if eval_texts
        else []
    )
    return TrainingData(train=train, eval=evaluation)


def _quiet_loading(ctx: PassContext) -> None:
    # transformers draws a "Loading weights" bar on every load; keep it for debug output only.
    if not ctx.log.isEnabledFor(logging.DEBUG):
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()


def pad_token_id(tokenizer: PreTrainedTokenizerBase) -> int:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return 0 if pad is None else int(pad)


def _usable(examples: list[dict[str, list[int]]]) -> list[dict[str, list[int]]]:
    """Sequences with at least one next-token target (a lone BOS teaches nothing)."""
    from olivepress.data.tokenize import IGNORE_INDEX

    return [ex for ex in examples if sum(label != IGNORE_INDEX for label in ex["labels"][1:]) > 0]


def log_summary(ctx: PassContext, name: str, result: TrainResult) -> None:
    evals = (
        f"; eval loss {result.eval_loss_before:.4f} -> {result.eval_loss:.4f}"
        if result.eval_loss_before is not None and result.eval_loss is not None
        else ""
    )
    evals = evals or (f"; eval loss {result.eval_loss:.4f}" if result.eval_loss is not None else "")
    ctx.log.info(
        "%s trained: %d steps (%.2f epochs) in %.1f s, %.0f tok/s (%s, %.1f%% padding); train loss %.4f%s",
        name,
        result.steps,
        result.epochs,
        result.runtime_s,
        result.tokens_per_s,
        result.precision,
        100 * result.padding_fraction,
        result.train_loss,
        evals,
    )
