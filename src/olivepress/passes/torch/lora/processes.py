"""An adapter pass trained by several processes (`num_processes`, `nnodes`): the job is written
down, every process runs `worker.py` on it through torchrun's launcher (train/launch.py), and
the first process's adapter and training log are the pass's output."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from olivepress.errors import OlivepressError
from olivepress.models.handles import HfModel
from olivepress.passes.base import PassContext
from olivepress.passes.torch.lora.config import AdapterPassConfig
from olivepress.passes.torch.lora.train_adapter import ADAPTER_DIR, Method, log_summary, processes_of
from olivepress.train.launch import Processes, run_processes, threads_per_process

WORKER = "olivepress.passes.torch.lora.worker"
RESULT = "result.json"


def train_in_processes(
    model: HfModel, config: AdapterPassConfig, out_dir: Path, ctx: PassContext, method: Method
) -> HfModel:
    """Train on every process of this machine (and wait for the other machines); the adapter
    is written once, by process 0, and removed again if any process fails."""
    from olivepress.train.loop import TrainResult

    processes = processes_of(config)
    _check_devices(processes, ctx)
    threads = threads_per_process(processes.per_node)
    ctx.log.info(
        "%s on %d processes (%s), %d thread%s each",
        method.name,
        processes.world_size,
        _where(processes),
        threads,
        "" if threads == 1 else "s",
    )
    with tempfile.TemporaryDirectory(prefix="olivepress-job-") as folder:
        job = Path(folder) / "job.json"
        job.write_text(json.dumps(_job(model, config, out_dir, ctx, method, Path(folder) / RESULT)))
        try:
            run_processes(WORKER, job, processes, threads=threads)
        except BaseException:
            shutil.rmtree(out_dir / ADAPTER_DIR, ignore_errors=True)  # no half-written adapter
            raise
        result_file = Path(folder) / RESULT
        result = TrainResult(**json.loads(result_file.read_text())) if result_file.is_file() else None
    if result is None:  # process 0 runs on another machine, and writes the adapter there
        ctx.log.info(
            "This machine's processes finished; node 0 (%s) writes the adapter", processes.master_addr
        )
        return HfModel(path=model.path, task=model.task, load_kwargs=model.load_kwargs)
    log_summary(ctx, method.name, result)
    adapter = str(out_dir / ADAPTER_DIR)
    return HfModel(path=model.path, adapter_path=adapter, task=model.task, load_kwargs=model.load_kwargs)


def _job(
    model: HfModel, config: AdapterPassConfig, out_dir: Path, ctx: PassContext, method: Method, result: Path
) -> dict:
    """Everything a worker needs, as JSON: data configs given by name are written out inline."""
    inline = {"train_data_config": ctx.data_config(config.train_data_config)}
    if config.eval_data_config is not None:
        inline["eval_data_config"] = ctx.data_config(config.eval_data_config)
    return {
        "pass_type": method.name,
        "model": model.model_dump(mode="json"),
        "config": config.model_copy(update=inline).model_dump(mode="json"),
        "out_dir": str(out_dir),
        "result": str(result),
        "log_level": ctx.log.getEffectiveLevel(),
        "device": ctx.device,
    }


def _check_devices(processes: Processes, ctx: PassContext) -> None:
    import torch

    from olivepress.cpu import available_cores

    if torch.cuda.is_available():
        gpus = torch.cuda.device_count()
        if processes.per_node > gpus:
            raise OlivepressError(
                f"num_processes is {processes.per_node} but this machine has {gpus} "
                f"GPU{'s' if gpus > 1 else ''}; give at most {gpus} (one process per GPU)"
            )
    elif processes.per_node > available_cores():
        ctx.log.warning(
            "num_processes %d is more than this machine's %d cores: the processes share cores and "
            "train slower than fewer would",
            processes.per_node,
            available_cores(),
        )


def _where(processes: Processes) -> str:
    if processes.nnodes == 1:
        return "this machine"
    first, last = processes.first_rank, processes.first_rank + processes.per_node - 1
    ranks = f"rank {first}" if first == last else f"ranks {first}-{last}"
    return f"{processes.nnodes} machines; {ranks} here, node {processes.node_rank}"
