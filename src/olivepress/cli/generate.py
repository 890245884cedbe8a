"""`olivepress generate`: one prompt through an ORT GenAI model."""

from __future__ import annotations

import argparse

HELP = "Generate text from an ORT GenAI model folder (or an olivepress output folder)."


def add_parser(commands) -> None:
    from olivepress.cli.common import add_logging_flags

    parser = commands.add_parser("generate", help=HELP, description=HELP)
    parser.add_argument("-m", "--model", required=True, help="ORT GenAI folder, or an olivepress output folder holding model/.")
    parser.add_argument("-p", "--prompt", action="append", required=True, help="Prompt text; repeat for several prompts.")
    parser.add_argument("--max_new_tokens", type=int, default=128, help="Most tokens to generate (default 128).")
    parser.add_argument("--do_sample", action="store_true", help="Sample instead of greedy decoding.")
    parser.add_argument("--temperature", type=float, help="Sampling temperature (with --do_sample).")
    parser.add_argument("--top_p", type=float, help="Nucleus sampling probability mass (with --do_sample).")
    parser.add_argument("--top_k", type=int, help="Sample from the k most likely tokens (with --do_sample).")
    parser.add_argument("--seed", type=int, help="Random seed for sampling.")
    parser.add_argument("--raw", action="store_true", help="Send the prompt as it is, without the model's chat template.")
    add_logging_flags(parser)
    parser.set_defaults(execute=execute)


def execute(args: argparse.Namespace) -> int:
    import sys

    from olivepress.runtime.generate import GenAIModel, SearchOptions
    from olivepress.ui import console, setup_logging

    setup_logging(0 if args.debug else args.log_level)
    options = SearchOptions(
        max_new_tokens=args.max_new_tokens, do_sample=args.do_sample, temperature=args.temperature,
        top_p=args.top_p, top_k=args.top_k, seed=args.seed,
    )
    options.check()
    model = GenAIModel(args.model)
    for prompt in args.prompt:
        console.print(f"[bold]> {prompt}[/]")
        result = model.generate(prompt, options, use_chat_template=not args.raw,
                                on_text=lambda piece: (sys.stdout.write(piece), sys.stdout.flush()))
        sys.stdout.write("\n")
        console.print(f"[dim]{result.new_tokens} tokens in {result.seconds:.2f} s ({result.tokens_per_s:.1f} tokens/s)[/]")
    return 0
