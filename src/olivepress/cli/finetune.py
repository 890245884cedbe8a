"""`olivepress finetune`: train a LoRA (QLoRA, DoRA, LoHa, LoKr) adapter on a model.

Builds a one-pass workflow (the model, a data config from the data flags, the method's pass)
and runs it through the engine, so it is cached and its output written atomically:
OUTPUT/model (the base the adapter trained on) and OUTPUT/adapter (a PEFT adapter folder,
with training_log.jsonl). Every Hugging Face TrainingArguments name the training loop honours
is a flag of its own (--warmup_steps 10, --lr_scheduler_type cosine, ...).
"""

from __future__ import annotations

import argparse
import json
import typing
from typing import Any

HELP = "Fine-tune an adapter (LoRA, QLoRA, DoRA, LoHa, LoKr) on a model with your data, on a CPU."

EXAMPLE = """\
example (the seed lab's step 2):
  olivepress finetune --method lora --model_name_or_path models/phi/awq \\
      --data_files data/data_sample_travel.jsonl --data_name json \\
      --text_template "<|user|>\\n{prompt}<|end|>\\n<|assistant|>\\n{response}<|end|>" \\
      --max_steps 100 --output_path models/phi/ft
"""

# HF names that are olivepress's own flags here (--log_level 0..4, --debug), not TrainingArguments.
_OWN_FLAGS = {"log_level", "debug"}
# Pass options with a flag of their own (the rest of a method's options: a workflow config).
PASS_FLAGS = (
    "lora_r",
    "lora_alpha",
    "lora_dropout",
    "target_modules",
    "num_processes",
    "nnodes",
    "node_rank",
    "master_addr",
    "master_port",
)


def add_parser(commands) -> None:
    from olivepress.cli.common import add_logging_flags
    from olivepress.cli.data_flags import add_data_flags
    from olivepress.passes.registry import command_passes

    methods = command_passes("finetune")
    parser = commands.add_parser("finetune", help=HELP, description=HELP, epilog=EXAMPLE)
    parser.add_argument(
        "--method",
        default="lora",
        metavar="{" + ",".join(methods) + "}",
        help="Adapter method (default lora). qlora holds the base in 4-bit NF4 while training.",
    )
    parser.add_argument(
        "-m",
        "--model_name_or_path",
        default="default",
        help="HF folder (float, AWQ or GPTQ), olivepress output folder, .gguf file, HF id in the local "
        "cache, or 'default' (embedded SmolLM2-135M-Instruct).",
    )
    parser.add_argument(
        "--trust_remote_code", action="store_true", help="Allow the model's own code (off unless given)."
    )

    data = add_data_flags(parser, "training data", required=True)
    data.add_argument(
        "--eval_split",
        "--eval_dataset_size",
        dest="eval_split",
        help="Eval data for eval loss: a fraction (0.1) or count (20) held out of the training data, "
        "or a split of the files ('train[90%%:]'). Default: none.",
    )
    data.add_argument("--max_seq_len", type=int, help="Longest training sequence in tokens (default 1024).")
    data.add_argument(
        "--packing",
        action="store_true",
        help="Join all samples into one stream cut into max_seq_len chunks (Olive's 'join'); default: one "
        "sequence per sample, batched by length.",
    )

    adapter = parser.add_argument_group("adapter")
    adapter.add_argument("--lora_r", type=int, help="Rank (default 16; 8 for loha/lokr).")
    adapter.add_argument(
        "--lora_alpha", type=float, help="Scale alpha; the update is scaled by alpha / r (default 2 x r)."
    )
    adapter.add_argument(
        "--lora_dropout", type=float, help="Dropout on the adapter input (lora, qlora, dora; default 0.05)."
    )
    adapter.add_argument(
        "--target_modules",
        help="Comma-separated Linear layer names, e.g. q_proj,v_proj "
        "(default: every attention and MLP projection).",
    )

    processes = parser.add_argument_group("several processes (torch.distributed; see docs/distributed.md)")
    processes.add_argument(
        "--num_processes",
        type=int,
        help="Training processes on this machine, data-parallel (default 1); the global "
        "batch stays per_device_train_batch_size x gradient_accumulation_steps.",
    )
    processes.add_argument(
        "--nnodes",
        type=int,
        help="Machines training together (default 1); run the same command on each with its own --node_rank.",
    )
    processes.add_argument(
        "--node_rank", type=int, help="This machine's index, 0 to nnodes-1 (node 0 writes the adapter)."
    )
    processes.add_argument("--master_addr", help="Address of node 0 that all machines reach (with --nnodes).")
    processes.add_argument(
        "--master_port", type=int, help="Port on --master_addr where the machines meet (default 29500)."
    )

    training = parser.add_argument_group("training (Hugging Face TrainingArguments names)")
    _add_training_flags(training)

    parser.add_argument(
        "-o", "--output_path", required=True, help="Output folder: OUTPUT/model and OUTPUT/adapter."
    )
    parser.add_argument(
        "--cache_dir",
        default=".olivepress-cache",
        help="Cache of finished passes (default .olivepress-cache).",
    )
    parser.add_argument("--clean_cache", action="store_true", help="Empty the cache before running.")
    add_logging_flags(parser)
    parser.set_defaults(execute=execute)
    _report_unknown_flags_here(parser)


def _report_unknown_flags_here(parser) -> None:
    """Let this command's parser, which knows its ~50 flags, reject a misspelt one (with a
    'did you mean'); argparse would hand it up to the top-level parser, which knows none of them."""
    parse_known = parser.parse_known_args

    def parse_known_args(args=None, namespace=None):
        namespace, extras = parse_known(args, namespace)
        if extras:
            parser.error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace, extras

    parser.parse_known_args = parse_known_args


def execute(args: argparse.Namespace) -> int:
    from olivepress.api import finetune
    from olivepress.cli.data_flags import split_commas
    from olivepress.ui import console

    log_level = 0 if args.debug else args.log_level
    given = {name: getattr(args, f"ta_{name}") for name in _training_flag_names()}
    training_args = {name: value for name, value in given.items() if value is not None}
    pass_options = {name: getattr(args, name) for name in PASS_FLAGS if getattr(args, name) is not None}
    if args.target_modules is not None:
        pass_options["target_modules"] = split_commas(args.target_modules)
    result = finetune(
        args.model_name_or_path,
        method=args.method,
        data_files=split_commas(args.data_files),
        data_name=args.data_name,
        split=args.split,
        eval_split=eval_split(args.eval_split),
        text_template=args.text_template,
        text_field=args.text_field,
        use_chat_template=args.use_chat_template,
        max_seq_len=args.max_seq_len,
        max_samples=args.max_samples,
        corpus_strategy="join" if args.packing else "line-by-line",
        training_args=training_args,
        pass_options=pass_options,
        trust_remote_code=args.trust_remote_code,
        output_path=args.output_path,
        cache_dir=args.cache_dir,
        clean_cache=args.clean_cache,
        log_level=log_level,
    )
    adapter = getattr(result.model, "adapter_path", None)
    if adapter:
        console.print(f"Adapter:      [bold]{adapter}[/]", soft_wrap=True)
        console.print(f"Training log: {adapter}/training_log.jsonl", soft_wrap=True)
    return 0


def eval_split(text: str | None) -> float | int | str | None:
    """--eval_split as typed: a fraction ("0.1") or count ("20") held out, else a split name."""
    if text is None:
        return None
    try:
        number = float(text)
    except ValueError:
        return text  # a split of the data files, e.g. "train[90%:]"
    return int(number) if number.is_integer() and "." not in text else number


def _training_flag_names() -> list[str]:
    from olivepress.train.args import IGNORED_HF_ARGS, TrainingArgs

    return [*TrainingArgs.model_fields, *sorted(IGNORED_HF_ARGS - _OWN_FLAGS)]


def _add_training_flags(group) -> None:
    from olivepress.train.args import IGNORED_HF_ARGS, TrainingArgs

    for name, field in TrainingArgs.model_fields.items():
        kind, choices = _flag_kind(field.annotation)
        names = [f"--{name}"] + (["--evaluation_strategy"] if name == "eval_strategy" else [])
        text = ((field.description or "") + _default(field)).replace("%", "%%")
        kwargs: dict[str, Any] = {"dest": f"ta_{name}", "type": kind, "help": text, "metavar": name.upper()}
        if kind is _boolean:
            kwargs.update(nargs="?", const=True, metavar="true|false")
        elif choices:
            kwargs.update(choices=choices, metavar=None)
        group.add_argument(*names, **kwargs)
    # Accepted like the HF Trainer's own flags, and ignored with a warning (see train/args.py).
    for name in sorted(IGNORED_HF_ARGS - _OWN_FLAGS):
        group.add_argument(f"--{name}", dest=f"ta_{name}", help=argparse.SUPPRESS)


def _default(field) -> str:
    if field.default is None or field.default_factory is not None:
        return ""
    return f" (default {field.default})"


def _flag_kind(annotation) -> tuple[Any, list[str] | None]:
    if typing.get_origin(annotation) is typing.Literal:
        return str, list(typing.get_args(annotation))
    args = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
    first = args[0]
    if typing.get_origin(first) is typing.Literal:
        return str, list(typing.get_args(first))
    if first is bool:
        return _boolean, None
    if first in (int, float, str):
        return first, None
    return json.loads, None  # dict options: a JSON object


def _boolean(text: str) -> bool:
    lowered = str(text).lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, not '{text}'")
