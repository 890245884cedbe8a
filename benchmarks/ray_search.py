"""A search on a Ray cluster: wall time with 1 and 2 worker nodes against the local run, and the
scheduling overhead per candidate.

The search is the one tests/test_ray_host.py runs, on a bigger random Llama (hidden 512, 4
layers): an fp32 ModelBuilder build shared by four candidates, OnnxMatMul4Quantizer int4 with
block_size in {16, 32} x is_symmetric in {true, false}, perplexity (seq_len 128) and size on
disk measured, the lowest perplexity kept. Each run is `olivepress run` in a fresh cache:

- local:  this machine, pinned to one core (taskset -c 0, OMP_NUM_THREADS=1);
- Ray, 1 worker:  a one-node cluster on 127.0.0.1, the node pinned to core 0 (1 CPU);
- Ray, 2 workers: the same plus a second node pinned to core 1.

Ray gives each candidate task OMP_NUM_THREADS=1 (its num_cpus). The driver is not pinned; it
only waits. Then the overhead: the same search again in this process with every pass cached and
only size on disk measured: the driver's round trip for one candidate at a time minus the time
inside the Ray task, against the same candidate run in this process.

    python benchmarks/ray_search.py                 # the random Llama (about 2 minutes here)
    python benchmarks/ray_search.py --model default # the embedded SmolLM2 (longer)
    python benchmarks/ray_search.py --overhead_only # only the overhead (result ray_search_overhead.json)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _common import print_table, write_result  # noqa: E402
from ray_cluster import local_ray_cluster  # noqa: E402

CANDIDATES = 4


def search_config(model: str, work: Path, tag: str, metrics: list[dict] | None = None) -> dict:
    return {
        "input_model": {"model_path": model},
        "passes": {
            "builder": {"type": "ModelBuilder", "precision": "fp32"},
            "q": {"type": "OnnxMatMul4Quantizer", "block_size": [16, 32], "is_symmetric": [True, False]},
        },
        "evaluator": {
            "metrics": metrics
            or [
                {
                    "name": "ppl",
                    "type": "perplexity",
                    "seq_len": 128,
                    "sub_types": [{"name": "perplexity", "priority": 1}],
                },
                {"name": "size", "type": "size_on_disk"},
            ]
        },
        "search_strategy": {"execution_order": "joint", "sampler": "sequential"},
        "cache_dir": str(work / tag / "cache"),
        "output_dir": str(work / tag / "out"),
    }


def timed_run(config: dict, work: Path, *, ray_address: str | None = None, core: int | None = None) -> dict:
    path = work / f"{Path(config['output_dir']).parent.name}.json"
    path.write_text(json.dumps(config))
    pin = ["taskset", "-c", str(core)] if core is not None else []
    command = [*pin, sys.executable, "-m", "olivepress", "run", "--config", str(path), "--log_level", "3"]
    if ray_address:
        command += ["--ray", ray_address]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    footprint = json.loads((Path(config["output_dir"]) / "footprint.json").read_text())
    (evaluation,) = footprint["evaluations"]
    chosen = next(c for c in evaluation["candidates"] if c["index"] == evaluation["chosen"])
    return {
        "wall_s": round(wall, 2),
        "footprint_total_s": round(footprint["total_duration_s"], 2),
        "candidates": len(evaluation["candidates"]),
        "failed": sum(bool(c["error"]) for c in evaluation["candidates"]),
        "chosen": chosen["point"],
        "chosen_model_id": chosen["model_id"],
        "nodes_used": len({c["worker"].get("node_id") for c in evaluation["candidates"]} - {None}),
    }


def overhead_per_candidate(model: str, work: Path, address: str, repeats: int = 3) -> dict:
    """Ray's cost per candidate: the driver's round trip for one candidate at a time (submit,
    schedule, send the job, run, send the result back) minus the time inside the task. The
    candidates are cheap (passes cached, size on disk only). Beside it, the same candidate run
    in this process (the local host), whose only overhead is a function call."""
    import ray

    from olivepress.api import run
    from olivepress.engine.hosts import LocalHost
    from olivepress.engine.ray_host import RayHost
    from olivepress.engine.runner import _JobMaker, input_handle, model_fingerprint
    from olivepress.engine.search import dimensions, flow_at
    from olivepress.workflow.load import load_workflow

    sizes = [{"name": "size", "type": "size_on_disk", "sub_types": [{"name": "size_mb", "priority": 1}]}]
    config = {**search_config(model, work, "overhead", sizes), "systems": {"c": {"type": "Ray"}}, "host": "c"}
    ray.init(address=address, logging_level="WARNING")
    try:
        run(config, summary=False, log_level=3)  # fills the cache, starts Ray's worker processes
        workflow = load_workflow(config)
        source = input_handle(workflow)
        make_job = _JobMaker(workflow, source, model_fingerprint(source), Path(config["cache_dir"]).resolve())
        (flow,) = workflow.flows
        dims = dimensions(flow)
        points = [
            {"q.block_size": b, "q.is_symmetric": s}
            for b in dims["q.block_size"]
            for s in dims["q.is_symmetric"]
        ]
        jobs = [make_job(flow_at(flow, point)) for point in points]
        ray_host, local_host = RayHost(workflow.host), LocalHost()
        round_trips, in_task, local = [], [], []
        for _ in range(repeats):
            for job in jobs:
                started = time.perf_counter()
                (outcome,) = ray_host.run([job])
                round_trips.append(time.perf_counter() - started)
                in_task.append(outcome.worker["task_s"])
                assert outcome.error is None and all(node.from_cache for node in outcome.nodes)
                started = time.perf_counter()
                local_host.run([job])
                local.append(time.perf_counter() - started)
    finally:
        ray.shutdown()
    overheads = [trip - task for trip, task in zip(round_trips, in_task, strict=True)]
    return {
        "ray_round_trip_s": round(statistics.median(round_trips), 4),
        "ray_in_task_s": round(statistics.median(in_task), 4),
        "overhead_s_per_candidate": round(statistics.median(overheads), 4),
        "local_s_per_candidate": round(statistics.median(local), 4),
        "samples": len(overheads),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", default="tiny", help="'tiny' (a random Llama, hidden 512), 'default' or a path"
    )
    parser.add_argument("--overhead_only", action="store_true", help="Measure only the scheduling overhead.")
    args = parser.parse_args()
    if len(os.sched_getaffinity(0)) < 2:
        raise SystemExit("this benchmark pins nodes to cores 0 and 1; it needs two cores")
    work = Path(tempfile.mkdtemp(prefix="ray-search-"))
    try:
        measure(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def measure(args: argparse.Namespace, work: Path) -> None:
    model = args.model
    if model == "tiny":
        from tiny_models import save_tiny_llama

        model = str(save_tiny_llama(work / "llama", hidden_size=512, layers=4))
    results = {}
    if not args.overhead_only:
        results["local, 1 core"] = timed_run(search_config(model, work, "local"), work, core=0)
        with local_ray_cluster(nodes=1, cores=[0]) as cluster:
            results["Ray, 1 worker"] = timed_run(
                search_config(model, work, "ray1"), work, ray_address=cluster.address
            )
    with local_ray_cluster(nodes=2, cores=[0, 1]) as cluster:
        if not args.overhead_only:
            results["Ray, 2 workers"] = timed_run(
                search_config(model, work, "ray2"), work, ray_address=cluster.address
            )
        overhead = overhead_per_candidate(model, work, cluster.address)
    if results:
        base = results["Ray, 1 worker"]["wall_s"]
        rows = [
            [
                name,
                r["wall_s"],
                r["footprint_total_s"],
                round(base / r["wall_s"], 2),
                r["nodes_used"],
                f"{r['candidates']} ({r['failed']} failed)",
                r["chosen_model_id"],
            ]
            for name, r in results.items()
        ]
        print_table(
            f"{CANDIDATES}-candidate search, model {args.model} (fresh cache each)",
            ["host", "wall s", "engine s", "speed-up vs 1 worker", "nodes used", "candidates", "chosen"],
            rows,
        )
    print_table(
        f"Scheduling overhead per candidate (cached, size on disk only; median of {overhead['samples']})",
        ["", "s"],
        [
            ["Ray: driver's round trip", overhead["ray_round_trip_s"]],
            ["Ray: inside the task", overhead["ray_in_task_s"]],
            ["Ray: overhead (difference)", overhead["overhead_s_per_candidate"]],
            ["local: the same candidate in-process", overhead["local_s_per_candidate"]],
        ],
    )
    load = os.getloadavg()[0]
    print(
        f"\n1-minute load average at the end: {load:.1f} on {os.cpu_count()} cores (other work shares them)"
    )
    name = "ray_search_overhead" if args.overhead_only else "ray_search"
    write_result(
        name,
        {"model": args.model, "candidates": CANDIDATES, "runs": results, "overhead": overhead, "load": load},
    )


if __name__ == "__main__":
    main()
