"""Search: choices in pass options, strategies and samplers, the choice of the best candidate,
the footprint and the report, and the errors for configs that cannot search."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from olivepress.engine.search import Candidate, GoalSpec, choose, mark_pareto, search
from olivepress.errors import OlivepressError
from olivepress.evaluate.config import Goal
from olivepress.evaluate.evaluator import MetricValue
from olivepress.workflow.load import load_workflow
from olivepress.workflow.search_config import Objective, SearchStrategyConfig
from test_cli import assert_one_line_error, olivepress, write

EVALUATOR = {
    "metrics": [
        {
            "name": "ppl",
            "type": "perplexity",
            "seq_len": 64,
            "sub_types": [{"name": "perplexity", "goal": {"type": "percent-max-degradation", "value": 10}}],
        },
        {
            "name": "speed",
            "type": "throughput",
            "warmup_runs": 1,
            "timed_runs": 3,
            "prompt_tokens": 16,
            "decode_tokens": 8,
            "sub_types": [{"name": "decode_tokens_per_s", "priority": 1}],
        },
    ]
}


def _config(tmp_path: Path, model: Path, builder: dict, **engine) -> dict:
    return {
        "input_model": {"type": "PyTorchModel", "config": {"hf_config": {"model_name": str(model)}}},
        "passes": {"builder": {"type": "ModelBuilder", "config": {"precision": "int4", **builder}}},
        "evaluators": {"common": {"metrics": EVALUATOR["metrics"]}},
        "engine": {
            "evaluator": "common",
            "cache_dir": str(tmp_path / "cache"),
            "output_dir": str(tmp_path / "out"),
            **engine,
        },
    }


def test_search_dimensions_from_lists_categorical_and_searchable_values(tiny_llama_dir):
    workflow = load_workflow(
        {
            "input_model": {"model_path": str(tiny_llama_dir)},
            "passes": {
                "builder": {
                    "type": "ModelBuilder",
                    "int4_block_size": [32, 64, 128],
                    "int4_accuracy_level": {"type": "Categorical", "support": [0, 4]},
                },
                "q": {
                    "type": "OnnxMatMul4Quantizer",
                    "is_symmetric": "SEARCHABLE_VALUES",
                    "nodes_to_exclude": ["a", "b"],
                },
            },
            "evaluator": EVALUATOR,
            "search_strategy": {"objectives": ["speed.decode_tokens_per_s"]},
        }
    )
    builder, quantizer = workflow.flows[0]
    assert builder.choices == {"int4_block_size": [32, 64, 128], "int4_accuracy_level": [0, 4]}
    # a list for an option that takes a list is that option's value, not a set of choices
    assert quantizer.choices == {"is_symmetric": [False, True]}
    assert quantizer.config.nodes_to_exclude == ["a", "b"]
    assert builder.with_values({"int4_block_size": 128}).config.int4_block_size == 128
    assert workflow.objectives == [Objective("speed.decode_tokens_per_s", True)]


def test_joint_search_keeps_the_fastest_candidate_that_meets_the_goal(tmp_path, tiny_llama_dir):
    config = _config(
        tmp_path,
        tiny_llama_dir,
        {"int4_block_size": [32, 64], "int4_accuracy_level": [0, 4]},
        search_strategy={"execution_order": "joint", "search_algorithm": "exhaustive"},
    )
    result = olivepress("run", "--config", write(tmp_path, config))
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out"
    footprint = json.loads((out / "footprint.json").read_text())
    (evaluation,) = footprint["evaluations"]
    candidates = evaluation["candidates"]
    assert [c["point"] for c in candidates] == [
        {"builder.int4_block_size": b, "builder.int4_accuracy_level": a} for b in (32, 64) for a in (0, 4)
    ]
    baseline = footprint["input_metrics"]["ppl.perplexity"]["value"]
    for c in candidates:
        assert c["meets_goals"] == (c["metrics"]["ppl.perplexity"]["value"] <= baseline * 1.1)
    eligible = [c for c in candidates if c["meets_goals"]] or candidates
    best = max(eligible, key=lambda c: c["metrics"]["speed.decode_tokens_per_s"]["value"])
    assert evaluation["chosen"] == best["index"]
    assert any(c["pareto"] for c in candidates) and best["pareto"]
    # the chosen candidate's model is the output, built with its options
    builder_node = next(n for n in footprint["nodes"] if n["model_id"] == best["model_id"])
    assert builder_node["config"]["int4_block_size"] == best["point"]["builder.int4_block_size"]
    assert (out / "model" / "genai_config.json").is_file()
    for name in ("report.html", "report.md", "pareto.png"):
        assert (out / name).stat().st_size > 0, name
    report = (out / "report.md").read_text()
    assert "Pareto" in report and f"{best['index']} (chosen)" in report and "at most 10% worse" in report
    assert "report.html" in result.stderr

    from olivepress.api import run

    again = run(config, summary=False, log_level=3)  # only evaluation is left to do
    rerun = again.footprint.evaluations[0]["candidates"]
    assert len(rerun) == 4 and all(p["from_cache"] for c in rerun for p in c["passes"])


def test_tpe_sampler_evaluates_distinct_candidates_up_to_max_samples(tmp_path, tiny_llama_dir):
    from olivepress.api import run

    config = _config(
        tmp_path,
        tiny_llama_dir,
        {"int4_block_size": [32, 64, 128], "int4_accuracy_level": [0, 4]},
        search_strategy={"sampler": "tpe", "max_samples": 3, "seed": 1},
    )
    result = run(config, summary=False, log_level=3)
    (evaluation,) = result.footprint.evaluations
    points = [json.dumps(c["point"], sort_keys=True) for c in evaluation["candidates"]]
    assert len(points) == 3 == len(set(points))


def _synthetic(points: list[dict], flow, strategy: dict) -> list[Candidate]:
    """Run the real search over a real flow with a cheap, known metric in place of a model."""

    def evaluate_point(point):
        speed = (
            point["builder.int4_block_size"]
            + 10 * point["builder.int4_accuracy_level"]
            + point.get("q.block_size", 0)
        )
        points.append(point)
        return Candidate(
            index=0, point=point, model=None, nodes=[], metrics={"s.x": MetricValue(speed, True)}
        )

    def evaluate_points(batch):
        return [evaluate_point(point) for point in batch]

    strategy = SearchStrategyConfig.model_validate(strategy)
    return search(flow, strategy, [Objective("s.x", True)], [], {}, evaluate_points)


def test_pass_by_pass_fixes_each_pass_in_turn(tiny_llama_dir):
    workflow = load_workflow(
        {
            "input_model": {"model_path": str(tiny_llama_dir)},
            "passes": {
                "builder": {
                    "type": "ModelBuilder",
                    "precision": "fp32",
                    "int4_block_size": [32, 64],
                    "int4_accuracy_level": [0, 4],
                },
                "q": {"type": "OnnxMatMul4Quantizer", "block_size": [16, 32, 64]},
            },
            "evaluator": EVALUATOR,
            "search_strategy": {"execution_order": "pass-by-pass"},
        }
    )
    seen: list[dict] = []
    candidates = _synthetic(seen, workflow.flows[0], {"execution_order": "pass-by-pass"})
    assert len(candidates) == 4 + 3 - 1  # 2x2 for the builder, then 3 for q (one of them already seen)
    # the builder is searched with q at its first choice, then q with the builder's best
    assert all(p["q.block_size"] == 16 for p in seen[:4])
    assert all(p["builder.int4_block_size"] == 64 and p["builder.int4_accuracy_level"] == 4 for p in seen[4:])
    assert choose(candidates, [Objective("s.x", True)]).point["q.block_size"] == 64
    joint = _synthetic(
        [], workflow.flows[0], {"execution_order": "joint", "sampler": "random", "max_samples": 5}
    )
    assert len(joint) == 5


def test_goals_come_before_objectives_and_the_pareto_front():
    def candidate(index, speed, ppl, met):
        metrics = {"s.x": MetricValue(speed, True), "p.p": MetricValue(ppl, False)}
        return Candidate(index=index, point={}, model=None, nodes=[], metrics=metrics, goals={"p.p": met})

    fast_bad, slow_good, mid_good, dominated = (
        candidate(1, 9, 20, False),
        candidate(2, 5, 10, True),
        candidate(3, 7, 11, True),
        candidate(4, 4, 12, True),
    )
    objectives = [Objective("s.x", True)]
    assert choose([fast_bad, slow_good, mid_good, dominated], objectives) is mid_good
    mark_pareto(
        [fast_bad, slow_good, mid_good, dominated],
        objectives,
        [GoalSpec("p.p", Goal(type="threshold", value=11), False)],
    )
    assert [c.pareto for c in (fast_bad, slow_good, mid_good, dominated)] == [True, True, True, False]
    assert choose([fast_bad], objectives) is fast_bad  # none meets the goals: the best there is


@pytest.mark.parametrize(
    ("builder", "engine", "message"),
    [
        (
            {"int4_blocksize": [32, 64]},
            {"search_strategy": {}},
            "search option 'int4_blocksize' is not an option of ModelBuilder .*did you mean "
            "'int4_block_size'",
        ),
        ({"int4_block_size": [32, 48]}, {"search_strategy": {}}, "int4_block_size"),
        (
            {"int4_block_size": [32, 64]},
            {"search_strategy": False},
            "lists choices \\[32, 64\\] but search_strategy is False",
        ),
        (
            {"int4_block_size": [32, 64]},
            {"search_strategy": {"objectives": [{"higher_is_better": True}]}},
            "names no metric",
        ),
        (
            {"int4_block_size": [32, 64]},
            {"search_strategy": {"objectives": ["speed.decode"]}},
            "'speed.decode' names no metric the evaluator reports",
        ),
        ({"int4_block_size": [32, 64]}, {"search_strategy": {"sampler": "bayes"}}, "sampler"),
        (
            {"int4_block_size": [32, 64]},
            {"search_strategy": {}, "evaluator": "commn"},
            "evaluator 'commn' is not defined .*did you mean 'common'",
        ),
    ],
)
def test_configs_that_cannot_search_are_one_line_errors(tmp_path, tiny_llama_dir, builder, engine, message):
    config = _config(tmp_path, tiny_llama_dir, builder, **engine)
    assert_one_line_error(olivepress("run", "--config", write(tmp_path, config)), message)


def test_search_needs_an_evaluator_and_an_objective(tmp_path, tiny_llama_dir):
    config = _config(tmp_path, tiny_llama_dir, {"int4_block_size": [32, 64]}, search_strategy={})
    no_priority = [
        {**m, "sub_types": [{k: v for k, v in s.items() if k != "priority"} for s in m["sub_types"]]}
        for m in EVALUATOR["metrics"]
    ]
    with pytest.raises(OlivepressError, match="no objective"):
        load_workflow({**config, "evaluators": {"common": {"metrics": no_priority}}})
    del config["engine"]["evaluator"]
    with pytest.raises(OlivepressError, match="needs an evaluator"):
        load_workflow(config)


def test_the_pass_type_itself_can_be_searched(tiny_llama_dir):
    from olivepress.engine.search import dimensions, flow_at

    def workflow(quant: dict):
        return load_workflow(
            {
                "input_model": {"model_path": str(tiny_llama_dir)},
                "passes": {"quant": quant, "builder": {"type": "ModelBuilder"}},
                "evaluator": EVALUATOR,
                "search_strategy": {},
            }
        )

    flow = workflow({"type": ["RTN", "AWQ"], "group_size": [32, 128]}).flows[0]
    assert dimensions(flow) == {"quant.type": ["RTN", "AWQ"], "quant.group_size": [32, 128]}
    awq, builder = flow_at(flow, {"quant.type": "AWQ", "quant.group_size": 128})
    assert (awq.spec.name, awq.config.group_size, builder.spec.name) == ("AWQ", 128, "ModelBuilder")
    assert flow_at(flow, {})[0].spec.name == "RTN"
    with pytest.raises(OlivepressError, match=r"unknown key 'n_grid' in passes.quant \(RTN\)"):
        workflow({"type": ["RTN", "AWQ"], "n_grid": 10})


def test_an_evaluator_without_a_search_measures_the_one_result(tmp_path, tiny_llama_dir):
    from olivepress.api import run

    config = _config(tmp_path, tiny_llama_dir, {"int4_block_size": 32}, search_strategy=False)
    config["evaluators"]["common"]["metrics"][0]["sub_types"][0]["goal"] = {
        "type": "threshold",
        "value": 1.0,
    }  # unreachable
    result = run(config, summary=False, log_level=3)
    (evaluation,) = result.footprint.evaluations
    (candidate,) = evaluation["candidates"]
    assert evaluation["search"] is None and candidate["point"] == {}
    assert not candidate["meets_goals"] and "NO candidate meets every goal" in evaluation["reason"]
    out = tmp_path / "out"
    assert (out / "report.html").is_file() and not (out / "pareto.png").exists()
    assert "✗" in (out / "report.md").read_text()


def test_search_over_quantizers_rtn_and_awq_before_the_builder(tmp_path, tiny_llama_dir):
    from olivepress.api import run

    config = {
        "input_model": {"model_path": str(tiny_llama_dir)},
        "passes": {
            "quant": {"type": ["RTN", "AWQ"], "group_size": 32, "num_calib_samples": 2, "calib_seq_len": 32},
            "builder": {"type": "ModelBuilder", "precision": "int4"},
        },
        "evaluator": {
            "metrics": [
                {
                    "name": "ppl",
                    "type": "perplexity",
                    "seq_len": 64,
                    "sub_types": [{"name": "perplexity", "priority": 1}],
                }
            ]
        },
        "search_strategy": {},
        "cache_dir": str(tmp_path / "cache"),
        "output_dir": str(tmp_path / "out"),
    }
    (evaluation,) = run(config, summary=False, log_level=3).footprint.evaluations
    candidates = evaluation["candidates"]
    assert [c["point"]["quant.type"] for c in candidates] == ["RTN", "AWQ"]
    assert [[p["name"] for p in c["passes"]] for c in candidates] == [["quant", "builder"]] * 2
    best = min(candidates, key=lambda c: c["metrics"]["ppl.perplexity"]["value"])
    assert evaluation["chosen"] == best["index"]
    footprint = json.loads((tmp_path / "out" / "footprint.json").read_text())
    assert {n["pass_type"] for n in footprint["nodes"]} == {"RTN", "AWQ", "ModelBuilder"}
