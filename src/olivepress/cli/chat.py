"""`olivepress chat`: an interactive, streaming chat with an ORT GenAI model.

/adapter switches LoRA adapters.
"""

from __future__ import annotations

import argparse

HELP = (
    "Chat with an ORT GenAI model in the terminal (streaming); '/adapter NAME' switches adapters, '/quit' "
    "ends."
)

COMMANDS_TEXT = "commands: /adapter NAME (or 'base'), /adapters, /reset (forget the conversation), /quit"


def add_parser(commands) -> None:
    from olivepress.cli.common import add_logging_flags
    from olivepress.cli.generate import add_search_flags

    parser = commands.add_parser("chat", help=HELP, description=HELP)
    add_search_flags(parser)
    parser.add_argument(
        "--active", default="base", metavar="NAME", help="Adapter active at the start ('base' = none)."
    )
    add_logging_flags(parser)
    parser.set_defaults(execute=execute)


def execute(args: argparse.Namespace) -> int:
    import sys

    from olivepress.cli.generate import parse_adapters, search_options
    from olivepress.errors import OlivepressError
    from olivepress.runtime.generate import BASE, GenAIModel
    from olivepress.share.resolve import local_model
    from olivepress.ui import console, setup_logging

    setup_logging(0 if args.debug else args.log_level)
    options = search_options(args)
    model = GenAIModel(local_model(args.model), adapters=parse_adapters(args.adapter))
    active = args.active
    if active != BASE and active not in model.adapter_names:
        raise OlivepressError(
            f"no adapter named '{active}' (loaded: {', '.join(model.adapter_names) or 'none'})"
        )
    console.print(
        f"[dim]{model.folder} — adapters: {', '.join(model.adapter_names) or 'none'}; {COMMANDS_TEXT}[/]"
    )
    history: list[dict[str, str]] = []
    while True:
        try:
            line = input(f"[{active}] you> ").strip()
        except EOFError:
            break
        if not line:
            continue
        if line.startswith("/"):
            command, _, value = line.partition(" ")
            if command == "/quit":
                break
            if command == "/adapters":
                console.print(", ".join([BASE, *model.adapter_names]))
            elif command == "/adapter" and (value == BASE or value in model.adapter_names):
                active = value
            elif command == "/adapter":
                console.print(
                    f"[red]no adapter named '{value}'[/] (choose from "
                    f"{', '.join([BASE, *model.adapter_names])})"
                )
            elif command == "/reset":
                history.clear()
            else:
                console.print(COMMANDS_TEXT)
            continue
        history.append({"role": "user", "content": line})
        result = model.generate(
            history,
            options,
            use_chat_template=not args.raw,
            adapter=active,
            on_text=lambda piece: (sys.stdout.write(piece), sys.stdout.flush()),
        )
        sys.stdout.write("\n")
        history.append({"role": "assistant", "content": result.text})
        console.print(f"[dim]{result.tokens_per_s:.1f} tokens/s[/]")
    return 0
