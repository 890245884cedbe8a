"""`olivepress generate`: prompts through an ORT GenAI model, with or without LoRA adapters."""

from __future__ import annotations

import argparse

HELP = (
    "Generate text from an ORT GenAI model folder (or an olivepress output folder), with adapters on or off."
)


def add_search_flags(parser: argparse.ArgumentParser) -> None:
    """Model, adapter and search flags shared by generate and chat."""
    from olivepress.cli.common import add_adapter_flag

    parser.add_argument(
        "-m",
        "--model",
        required=True,
        help="ORT GenAI folder, olivepress output folder, package archive, or models:/NAME/VERSION.",
    )
    add_adapter_flag(
        parser,
        (
            "Load an .onnx_adapter under NAME (repeatable); adapters listed in the model's adapters.json "
            "load by themselves."
        ),
    )
    parser.add_argument(
        "--max_new_tokens", type=int, default=128, help="Most tokens to generate (default 128)."
    )
    parser.add_argument("--do_sample", action="store_true", help="Sample instead of greedy decoding.")
    parser.add_argument("--temperature", type=float, help="Sampling temperature (with --do_sample).")
    parser.add_argument("--top_p", type=float, help="Nucleus sampling probability mass (with --do_sample).")
    parser.add_argument("--top_k", type=int, help="Sample from the k most likely tokens (with --do_sample).")
    parser.add_argument("--seed", type=int, help="Random seed for sampling.")
    parser.add_argument(
        "--raw", action="store_true", help="Send the prompt as it is, without the model's chat template."
    )


def add_parser(commands) -> None:
    from olivepress.cli.common import add_logging_flags

    parser = commands.add_parser("generate", help=HELP, description=HELP)
    add_search_flags(parser)
    parser.add_argument(
        "-p", "--prompt", action="append", required=True, help="Prompt text; repeat for several prompts."
    )
    parser.add_argument(
        "--active",
        action="append",
        metavar="NAME",
        help="Adapter to switch on ('base' = none); repeat to compare side by side (default: base).",
    )
    add_logging_flags(parser)
    parser.set_defaults(execute=execute)


def parse_adapters(pairs: list[str]) -> dict[str, str]:
    from olivepress.errors import OlivepressError

    adapters = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep or not name or not path:
            raise OlivepressError(
                f"--adapter takes NAME=FILE (e.g. travel=models/travel.onnx_adapter), not '{pair}'"
            )
        adapters[name] = path
    return adapters


def search_options(args: argparse.Namespace):
    from olivepress.runtime.generate import SearchOptions

    options = SearchOptions(
        max_new_tokens=args.max_new_tokens,
        do_sample=args.do_sample,
        temperature=args.temperature,
        top_p=args.top_p,
        top_k=args.top_k,
        seed=args.seed,
    )
    options.check()
    return options


def execute(args: argparse.Namespace) -> int:
    import sys

    from olivepress.errors import OlivepressError
    from olivepress.runtime.generate import BASE, GenAIModel
    from olivepress.share.resolve import local_model
    from olivepress.ui import console, setup_logging

    setup_logging(0 if args.debug else args.log_level)
    options = search_options(args)
    model = GenAIModel(local_model(args.model), adapters=parse_adapters(args.adapter))
    active = args.active or [BASE]
    for name in active:
        if name != BASE and name not in model.adapter_names:
            known = ", ".join(model.adapter_names) or "none"
            raise OlivepressError(
                f"no adapter named '{name}' (loaded: {known}); add it with --adapter {name}=FILE"
            )
    for prompt in args.prompt:
        console.print(f"[bold]> {prompt}[/]")
        for name in active:
            if len(active) > 1:
                console.print(f"[cyan]\\[{name}][/]")
            result = model.generate(
                prompt,
                options,
                use_chat_template=not args.raw,
                adapter=name,
                on_text=lambda piece: (sys.stdout.write(piece), sys.stdout.flush()),
            )
            sys.stdout.write("\n")
            console.print(
                f"[dim]{result.new_tokens} tokens in {result.seconds:.2f} s ({result.tokens_per_s:.1f} "
                "tokens/s)[/]"
            )
    return 0
