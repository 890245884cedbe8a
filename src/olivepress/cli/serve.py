"""`olivepress serve`: an OpenAI-compatible server for a model and its LoRA adapters."""

from __future__ import annotations

import argparse
import os

HELP = (
    "Serve an ORT GenAI model and its adapters over OpenAI's HTTP API (/v1/chat/completions, "
    "/v1/completions, /v1/models)."
)

EPILOG = (
    """\
The model is a folder (an olivepress output or an ORT GenAI folder), a package archive
(olivepress package), or a registered model: models:/NAME/VERSION. A request's "model" field
picks the adapter: the base model's id (see GET /v1/models) or an adapter's name.

  olivepress serve -m models/phi/onnx-ao --adapter travel=travel.onnx_adapter
"""
    "  curl localhost:8000/v1/chat/completions -d '"
    '{"model": "travel", "messages": [{"role": "user", "content": "Hi"}]}'
    "'\n"
)


def add_parser(commands) -> None:
    from olivepress.cli.common import add_adapter_flag, add_logging_flags

    parser = commands.add_parser("serve", help=HELP, description=HELP, epilog=EPILOG)
    parser.add_argument(
        "-m",
        "--model",
        required=True,
        help="Model folder, package archive, or models:/NAME/VERSION from the registry.",
    )
    add_adapter_flag(
        parser,
        (
            "Serve an .onnx_adapter as model NAME (repeatable); adapters in the model's adapters.json are "
            "served too."
        ),
    )
    parser.add_argument(
        "--served_model_name", help="The base model's id in the API (default: the model folder's name)."
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="Address to bind (default 127.0.0.1; others need --api_key)."
    )
    parser.add_argument("--port", type=int, default=8000, help="Port (default 8000; 0 picks a free one).")
    parser.add_argument(
        "--api_key",
        default=os.environ.get("OLIVEPRESS_API_KEY"),
        help="Require 'Authorization: Bearer KEY' (default: env OLIVEPRESS_API_KEY).",
    )
    parser.add_argument(
        "--parallel", type=int, default=8, help="Generations that run at the same time (default 8)."
    )
    parser.add_argument(
        "--no_batching",
        action="store_true",
        help="One ORT GenAI generator per request instead of batching greedy requests together.",
    )
    parser.add_argument(
        "--shutdown_timeout",
        type=float,
        default=30.0,
        help="Seconds in-flight requests get to finish on Ctrl-C / SIGTERM (default 30).",
    )
    parser.add_argument(
        "--registry_uri", help="MLflow registry for models:/ names (default: the local olivepress registry)."
    )
    add_logging_flags(parser)
    parser.set_defaults(execute=execute)


def base_model_id(model_arg: str, folder) -> str:
    """A readable id for the base model: the registered name, else the output folder's name."""
    if model_arg.startswith("models:/"):
        return model_arg.removeprefix("models:/").split("/")[0]
    name = folder.name
    return folder.parent.name if name == "model" else name


def execute(args: argparse.Namespace) -> int:
    import sys

    from olivepress.cli.generate import parse_adapters
    from olivepress.errors import OlivepressError
    from olivepress.runtime.generate import GenAIModel, genai_folder
    from olivepress.runtime.serve import Server, check_port, is_loopback, serve
    from olivepress.share.resolve import local_model
    from olivepress.ui import console, setup_logging

    setup_logging(0 if args.debug else args.log_level)
    if not is_loopback(args.host) and not args.api_key:
        raise OlivepressError(
            f"--host {args.host} makes the server reachable from other machines; set --api_key "
            "(or OLIVEPRESS_API_KEY), or bind 127.0.0.1"
        )
    check_port(args.host, args.port)  # before loading the model, which can take a while
    folder = local_model(args.model, registry_uri=args.registry_uri)
    model = GenAIModel(folder, adapters=parse_adapters(args.adapter))
    base_id = args.served_model_name or base_model_id(args.model, genai_folder(folder))
    server = Server(
        model, base_id=base_id, api_key=args.api_key, parallel=args.parallel, batching=not args.no_batching
    )

    def ready(port: int) -> None:
        console.print(f"Serving {', '.join(server.model_ids)} on http://{args.host}:{port}/v1 (Ctrl-C stops)")
        sys.stdout.flush()

    serve(server, args.host, args.port, shutdown_timeout=args.shutdown_timeout, on_ready=ready)
    return 0
