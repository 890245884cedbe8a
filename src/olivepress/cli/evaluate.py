"""`olivepress evaluate --config workflow.json`: measure the config's input model with its
evaluator, without running any pass."""

from __future__ import annotations

import argparse

HELP = "Evaluate a workflow's input model with the workflow's evaluator (no passes run)."


def add_parser(commands) -> None:
    from olivepress.cli.common import add_logging_flags

    parser = commands.add_parser("evaluate", help=HELP, description=HELP)
    parser.add_argument("--config", required=True, help="Workflow config file (.json, .yaml or .yml) with an evaluator.")
    parser.add_argument("-o", "--output_path", help="JSON file for the results (default: <output_dir>/metrics.json).")
    parser.add_argument("--allow_user_code", action="store_true",
                        help="Run Python the config names (custom metrics, data loaders); off unless given.")
    add_logging_flags(parser)
    parser.set_defaults(execute=execute)


def execute(args: argparse.Namespace) -> int:
    from pathlib import Path

    from olivepress.cli.benchmark import print_metrics, write_json
    from olivepress.engine.runner import input_handle
    from olivepress.engine.search import check_goals, describe_goals, goal_specs
    from olivepress.errors import OlivepressError
    from olivepress.evaluate.evaluator import evaluate_model
    from olivepress.ui import console, setup_logging
    from olivepress.workflow.load import load_workflow

    workflow = load_workflow(Path(args.config), allow_user_code=args.allow_user_code)
    setup_logging(0 if args.debug else args.log_level)
    if workflow.evaluator is None:
        raise OlivepressError(f"{args.config} has no evaluator; add \"evaluator\" (or engine.evaluator) naming one under evaluators")
    config = workflow.config
    model = input_handle(workflow)
    data_configs = {data.name: data for data in config.data_configs}
    results = evaluate_model(model, workflow.evaluator, data_configs=data_configs, execution_provider=workflow.execution_provider)
    # Relative goals compare a model with the input model, which this is: only thresholds say anything.
    goals = [g for g in goal_specs(workflow.evaluator) if g.goal.type == "threshold"]
    met = check_goals(results, goals, results)
    text = {name: f"{describe_goals(goals, results)[name]}: {'met' if ok else 'MISSED'}" for name, ok in met.items()}
    print_metrics(f"olivepress evaluate: {model.path}", results, text)
    output = args.output_path or str(Path(config.output_dir).expanduser() / "metrics.json")
    write_json(output, {
        "model": model.model_dump(), "metrics": {name: value.to_dict() for name, value in results.items()}, "goals": text,
    })
    console.print(f"Results: {output}")
    return 0 if all(met.values()) else 1
