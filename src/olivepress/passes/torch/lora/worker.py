"""One process of a multi-process adapter training: `python -m olivepress.passes.torch.lora.worker
JOB.json`, started by torchrun's launcher (see processes.py and train/launch.py).

It joins the process group (gloo on CPU, nccl with one GPU per process), trains its share of
each global batch, and on rank 0 writes the adapter, the training log and the result. An
error is recorded in torchrun's error file for the parent to report as one line, and the
process exits 1 without printing a traceback (the parent's `--debug` shows tracebacks).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    from torch.distributed.elastic.multiprocessing.errors import ErrorHandler

    try:
        run(json.loads(Path(argv[0]).read_text()))
    except BaseException as exc:  # every failure goes to the parent as one line
        ErrorHandler().record_exception(exc)
        logging.getLogger("olivepress").debug("training process failed", exc_info=True)
        return 1
    return 0


def run(job: dict) -> None:
    import torch
    import torch.distributed as dist

    from olivepress.models.handles import HfModel
    from olivepress.passes.base import PassContext
    from olivepress.passes.registry import find_pass
    from olivepress.passes.torch.lora.train_adapter import train_here
    from olivepress.train.world import World
    from olivepress.ui import setup_logging

    world = World.from_environment()
    debug = job["log_level"] <= logging.DEBUG
    setup_logging(0 if debug else 1)
    logger = logging.getLogger("olivepress")
    # Only the first process speaks (unless debugging): the others' lines would repeat its own.
    logger.setLevel(job["log_level"] if world.is_main or debug else logging.ERROR)
    if not debug:  # its import-time warning about an optional kernel, once per process
        logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    module = find_pass(job["pass_type"]).module
    config = module.Config.model_validate(job["config"])
    model = HfModel.model_validate(job["model"])
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(world.local_rank)
    dist.init_process_group(backend)
    try:
        ctx = PassContext(device=job["device"], log=logger)
        result = train_here(model, config, Path(job["out_dir"]), ctx, module.METHOD, world)
        if world.is_main:
            summary = {k: v for k, v in dataclasses.asdict(result).items() if k != "history"}
            Path(job["result"]).write_text(json.dumps(summary))
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
