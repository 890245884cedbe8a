"""Checks a run makes before its first pass: data the workflow will need but cannot have.

A recipe that trains on a hub data set, or ends with an lm-eval task whose data is not on the
machine, would otherwise stop with that line only when the pass or the evaluation reaches it,
after every pass before it has run (minutes to hours on a CPU).
"""

from __future__ import annotations

from olivepress.errors import OlivepressError
from olivepress.evaluate.config import MetricConfig
from olivepress.workflow.load import Workflow


def check_data_reachable(workflow: Workflow) -> None:
    """Raise the line the run would end on when data a pass or metric needs is not to be had."""
    check_data_configs(workflow)
    check_evaluation_provider(workflow)
    check_lm_eval_tasks(workflow)  # last: lm-eval indexes its tasks first (seconds)


def check_data_configs(workflow: Workflow) -> None:
    """A data config that a pass or metric names, and that names a hub data set olivepress does
    not read (anything but wikitext, which falls back to the shipped text), is refused now."""
    from olivepress.data.loading import require_local_files
    from olivepress.engine.flows import mentions

    data_configs = {data.name: data for data in workflow.config.data_configs}
    named: list[str] = []
    for flow in workflow.flows:
        for planned in flow:
            named += [name for name in data_configs if mentions(planned.options, name)]
            named += [name for name in data_configs if mentions(planned.choices, name)]
    metrics = _metrics(workflow)
    named += [
        m.data_config for m in metrics if isinstance(m.data_config, str) and m.data_config in data_configs
    ]
    needed = [data_configs[name] for name in dict.fromkeys(named)]
    needed += [
        m.data_config for m in metrics if m.data_config is not None and not isinstance(m.data_config, str)
    ]
    for data in needed:
        if not data.load_dataset_config.names_wikitext:
            require_local_files(data)


def check_lm_eval_tasks(workflow: Workflow) -> None:
    """Each lm-eval task the evaluator runs loads with its data now (seconds to a minute: lm-eval
    indexes its tasks), rather than after the passes."""
    for metric in _metrics(workflow):
        if metric.type == "lm_eval" and metric.task:
            from olivepress.evaluate.harness import check_task_data

            check_task_data(metric)


def check_evaluation_provider(workflow: Workflow) -> None:
    """An evaluator that will run an ONNX output with a provider this onnxruntime lacks (a CUDA
    recipe on a CPU machine) is refused now: building for it needs no GPU, running it does."""
    if workflow.evaluator is None or not any(
        planned.spec.module_name.startswith("olivepress.passes.onnx.")
        for flow in workflow.flows
        for planned in flow
    ):
        return
    import onnxruntime as ort

    from olivepress.targets import canonical_provider

    provider = canonical_provider(workflow.execution_provider) or workflow.execution_provider
    available = ort.get_available_providers()
    if provider not in available:
        raise OlivepressError(
            f"the evaluator would run the ONNX output with {provider}, which this onnxruntime does not "
            f"have ({', '.join(available)}); run the workflow where it has, set the system's "
            "execution_providers to one of these, or drop the evaluator to only build the model"
        )


def _metrics(workflow: Workflow) -> list[MetricConfig]:
    return workflow.evaluator.metrics if workflow.evaluator is not None else []
