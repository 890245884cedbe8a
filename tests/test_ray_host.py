"""A Ray cluster as the host of a search: the config and `run --ray`, candidates as Ray tasks on a
real two-node cluster on loopback (the same result as a local run, a re-run from the cache, a
killed worker's candidate retried), one build of an entry that candidates share, and failed
candidates kept in the record but never chosen."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from olivepress.engine.cache import PassCache
from olivepress.engine.hosts import LocalHost, open_host
from olivepress.engine.search import Candidate, choose, search
from olivepress.errors import OlivepressError
from olivepress.evaluate.evaluator import MetricValue
from olivepress.models.handles import HfModel
from olivepress.workflow.config import SystemConfig
from olivepress.workflow.load import load_workflow
from olivepress.workflow.normalize import use_ray_host
from olivepress.workflow.search_config import Objective, SearchStrategyConfig
from ray_cluster import SRC, LocalRayCluster
from test_cli import write


def _search_config(tmp_path: Path, model: Path, tag: str) -> dict:
    """Four candidates that share their first pass: an fp32 build, then int4 two ways x two blocks."""
    return {
        "input_model": {"model_path": str(model)},
        "passes": {
            "builder": {"type": "ModelBuilder", "precision": "fp32"},
            "q": {"type": "OnnxMatMul4Quantizer", "block_size": [16, 32], "is_symmetric": [True, False]},
        },
        "evaluator": {
            "metrics": [
                {
                    "name": "ppl",
                    "type": "perplexity",
                    "seq_len": 32,
                    "sub_types": [{"name": "perplexity", "priority": 1}],
                },
                {"name": "size", "type": "size_on_disk"},
            ]
        },
        "search_strategy": {"execution_order": "joint", "sampler": "sequential"},
        "cache_dir": str(tmp_path / tag / "cache"),
        "output_dir": str(tmp_path / tag / "out"),
    }


# --- the config -------------------------------------------------------------------------------


def test_a_ray_system_in_the_seed_shape_is_the_host(tiny_llama_dir):
    workflow = load_workflow(
        {
            "input_model": {"model_path": str(tiny_llama_dir)},
            "systems": {
                "cluster": {
                    "type": "Ray",
                    "config": {
                        "address": "ray://head:10001",
                        "resources_per_trial": {"num_cpus": 2, "num_gpus": 0.5},
                    },
                }
            },
            "engine": {"host": "cluster"},
        }
    )
    assert workflow.host.type == "Ray" and workflow.host.address == "ray://head:10001"
    assert (workflow.host.resources_per_trial.num_cpus, workflow.host.resources_per_trial.num_gpus) == (
        2,
        0.5,
    )
    assert load_workflow({"input_model": {"model_path": str(tiny_llama_dir)}}).host is None


def test_ray_options_on_a_local_system_are_one_line_errors(tiny_llama_dir):
    with pytest.raises(OlivepressError, match="options of a Ray system; set type Ray"):
        load_workflow(
            {
                "input_model": {"model_path": str(tiny_llama_dir)},
                "systems": {"here": {"type": "LocalSystem", "address": "auto"}},
            }
        )
    with pytest.raises(OlivepressError, match="unknown key 'num_cpu' in systems.c.resources_per_trial"):
        load_workflow(
            {
                "input_model": {"model_path": str(tiny_llama_dir)},
                "systems": {"c": {"type": "Ray", "resources_per_trial": {"num_cpu": 1}}},
            }
        )


def test_run_ray_adds_a_ray_host_and_keeps_the_target(tiny_llama_dir):
    raw = {
        "input_model": {"model_path": str(tiny_llama_dir)},
        "systems": {"local_system": {"type": "LocalSystem", "config": {"accelerators": ["cpu"]}}},
        "engine": {"host": "local_system", "cache_dir": "c"},
    }
    workflow = load_workflow(use_ray_host(raw, "127.0.0.1:6379"))
    assert workflow.host.type == "Ray" and workflow.host.address == "127.0.0.1:6379"
    assert workflow.config.target == "local_system" and workflow.device == "cpu"
    # a Ray host already named keeps its resources and gets the new address
    raw = {
        "input_model": {"model_path": str(tiny_llama_dir)},
        "host": "c",
        "systems": {"c": {"type": "Ray", "address": "auto", "resources_per_trial": {"num_cpus": 2}}},
    }
    workflow = load_workflow(use_ray_host(raw, "local"))
    assert workflow.host.address == "local" and workflow.host.resources_per_trial.num_cpus == 2
    assert list(workflow.config.systems) == ["c"]


def test_a_ray_host_without_ray_installed_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets where it is not installed
    with pytest.raises(OlivepressError, match=r"ray is not installed; pip install 'olivepress\[ray\]'"):
        open_host(SystemConfig(type="Ray", address="auto"))
    assert isinstance(open_host(SystemConfig(type="LocalSystem")), LocalHost)


# --- failed candidates and the shared cache ---------------------------------------------------


def _scored(point: dict, value: float | None) -> Candidate:
    if value is None:
        return Candidate(
            index=0, point=point, model=None, nodes=[], metrics={}, error="worker died (lost twice on Ray)"
        )
    return Candidate(index=0, point=point, model=None, nodes=[], metrics={"s.x": MetricValue(value, True)})


@pytest.mark.parametrize("sampler", ["sequential", "tpe"])
def test_a_failed_candidate_is_kept_but_never_chosen_and_the_search_goes_on(tiny_llama_dir, sampler):
    workflow = load_workflow(
        {
            "input_model": {"model_path": str(tiny_llama_dir)},
            "passes": {"builder": {"type": "ModelBuilder", "int4_block_size": [16, 32, 64, 128]}},
            "evaluator": {"metrics": [{"name": "s", "type": "size_on_disk"}]},
            "search_strategy": {"objectives": ["s.size_mb"]},
        }
    )
    batches = []

    def evaluate_points(points):
        batches.append(len(points))
        # the best point (block 128) is the one whose worker was lost
        return [
            _scored(p, None if p["builder.int4_block_size"] == 128 else p["builder.int4_block_size"])
            for p in points
        ]

    strategy = SearchStrategyConfig.model_validate({"sampler": sampler, "max_samples": 4, "seed": 0})
    candidates = search(
        workflow.flows[0], strategy, [Objective("s.x", True)], [], {}, evaluate_points, slots=2
    )
    assert len(candidates) == 4 and [c.index for c in candidates] == [1, 2, 3, 4]
    failed = [c for c in candidates if c.error]
    assert [c.point["builder.int4_block_size"] for c in failed] == [128]
    assert not failed[0].meets_goals and not failed[0].pareto
    assert choose(candidates, [Objective("s.x", True)]).point["builder.int4_block_size"] == 64
    # a grid is one batch; a learning sampler asks as many as the host has slots (fewer new
    # ones where it repeats a point), and each point is evaluated once
    assert sum(batches) == 4
    assert batches == [4] if sampler == "sequential" else (batches[0] == 2 and max(batches) == 2)
    with pytest.raises(OlivepressError, match="every one of the 1 candidate"):
        choose([_scored({}, None)], [Objective("s.x", True)])


def test_two_processes_sharing_a_cache_build_an_entry_once(tmp_path, tiny_llama_dir):
    builds = []

    def produce(out: Path) -> HfModel:
        builds.append(threading.get_ident())
        time.sleep(0.5)  # long enough for the other to arrive while this one builds
        shutil.copy(tiny_llama_dir / "config.json", out / "config.json")
        return HfModel(path=str(out))

    entries = []
    threads = [
        threading.Thread(target=lambda: entries.append(PassCache(tmp_path).get_or_run("k" * 32, produce)))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(builds) == 1
    assert sorted(e.from_cache for e in entries) == [False, True]
    assert entries[0].handle.path == entries[1].handle.path


# --- a real two-node Ray cluster on loopback ---------------------------------------------------


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[LocalRayCluster]:
    """A head node and a worker node of one CPU each on 127.0.0.1, this process connected."""
    ray = pytest.importorskip("ray")
    from ray_cluster import local_ray_cluster

    with local_ray_cluster(nodes=2) as cluster:
        ray.init(address=cluster.address, logging_level="WARNING")
        try:
            yield cluster
        finally:
            ray.shutdown()


def _outcome(footprint: dict) -> dict:
    """What must not depend on where the candidates ran: models, options, metrics, the choice."""
    (evaluation,) = footprint["evaluations"]
    return {
        "nodes": sorted(
            (n["model_id"], n["parent_model_id"], json.dumps(n["config"], sort_keys=True))
            for n in footprint["nodes"]
        ),
        "candidates": [
            (
                c["point"],
                c["model_id"],
                c["meets_goals"],
                c["pareto"],
                {name: round(m["value"], 4) for name, m in c["metrics"].items()},
            )
            for c in evaluation["candidates"]
        ],
        "chosen": evaluation["chosen"],
        "input_metrics": {name: round(m["value"], 4) for name, m in footprint["input_metrics"].items()},
    }


@pytest.mark.slow
def test_a_search_on_a_ray_cluster_matches_the_local_run_and_reuses_the_cache(
    ray_cluster, tmp_path, tiny_llama_dir
):
    from olivepress.api import run

    local = run(
        _search_config(tmp_path, tiny_llama_dir, "local"), summary=False, log_level=3
    ).footprint.to_dict()
    config = {
        **_search_config(tmp_path, tiny_llama_dir, "ray"),
        "systems": {"cluster": {"type": "Ray"}},
        "host": "cluster",
    }
    on_ray = run(config, summary=False, log_level=3).footprint.to_dict()
    assert on_ray["host"]["type"] == "Ray" and on_ray["host"]["slots"] == 2
    (evaluation,) = on_ray["evaluations"]
    assert len(evaluation["candidates"]) == 4 and not any(c["error"] for c in evaluation["candidates"])
    assert _outcome(on_ray) == _outcome(local)
    # both nodes ran candidates, and the build the four share ran once
    assert len({c["worker"]["node_id"] for c in evaluation["candidates"]}) == 2
    builds = [p for c in evaluation["candidates"] for p in c["passes"] if p["name"] == "builder"]
    assert sum(not p["from_cache"] for p in builds) == 1
    out = Path(config["output_dir"])
    assert (out / "model" / "genai_config.json").is_file() and "(chosen)" in (out / "report.md").read_text()

    again = run(config, summary=False, log_level=3).footprint.to_dict()
    assert all(p["from_cache"] for c in again["evaluations"][0]["candidates"] for p in c["passes"])
    assert _outcome(again) == _outcome(local)


@pytest.mark.slow
def test_a_worker_killed_mid_search_has_its_candidate_retried(ray_cluster, tmp_path, tiny_llama_dir):
    config = _search_config(tmp_path, tiny_llama_dir, "killed")
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    cli = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "olivepress",
            "run",
            "--config",
            write(tmp_path, config),
            "--ray",
            ray_cluster.address,
        ],
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    log, killed = [], None
    for line in cli.stderr:
        log.append(line)
        if killed is None and line.startswith("Candidate 4:"):  # every candidate is submitted
            deadline = time.monotonic() + 60
            while killed is None and time.monotonic() < deadline:
                running = ray_cluster.candidate_workers()
                if running:
                    killed = running[0]
                    os.kill(killed, signal.SIGKILL)
                time.sleep(0.05)
    assert cli.wait(timeout=300) == 0, "".join(log)
    assert killed is not None, "no worker was seen running a candidate"
    footprint = json.loads((Path(config["output_dir"]) / "footprint.json").read_text())
    candidates = footprint["evaluations"][0]["candidates"]
    # the candidate the killed worker ran was run again elsewhere, and every candidate has its metrics
    assert len(candidates) == 4 and not any(c["error"] for c in candidates), "".join(log)
    assert killed not in {c["worker"]["pid"] for c in candidates}
    assert all("ppl.perplexity" in c["metrics"] for c in candidates)


@pytest.mark.slow
def test_a_cluster_without_room_for_one_candidate_is_a_one_line_error(ray_cluster):
    message = r"no room for one candidate \(1 CPU, 1 GPU; it has 2 CPU, 0 GPU\)"
    with pytest.raises(OlivepressError, match=message):
        open_host(SystemConfig(type="Ray", resources_per_trial={"num_gpus": 1}))
