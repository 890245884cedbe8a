"""The processes that train one adapter together, as seen from one of them.

One process is `World()` (rank 0 of 1): every method is then the identity, so a
single-process run computes exactly what it did before there were several.

With several processes (started by launch.py through torchrun's launcher), every process
builds the same stream of micro-batches from the same seed, so each knows every global batch;
`share` picks its part. Gradients are summed with one `all_reduce` per optimizer step rather
than through `DistributedDataParallel`: the loss is already divided by the labelled targets of
the whole global batch, so the sum of the processes' gradients is exactly the one-process
gradient, and a process whose share of a step is empty simply adds zeros (DDP needs the same
number of backward passes everywhere, and its hooks run only when the forward goes through
its wrapper, which the head-on-labelled-positions loss in loss.py does not).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from olivepress.train.micro_batches import Batch, row_slice

if TYPE_CHECKING:
    import torch


class PeerLost(RuntimeError):
    """A collective failed because another process stopped: that process's error is the one
    to report (launch.first_failure prefers it)."""


@contextmanager
def _collective() -> Iterator[None]:
    try:
        yield
    except RuntimeError as exc:  # gloo and nccl errors (DistBackendError) are RuntimeErrors
        detail = " ".join(str(exc).split())[:200]
        raise PeerLost(f"another training process stopped first ({detail})") from exc


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @classmethod
    def from_environment(cls) -> World:
        """This process's place, from the variables torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK)."""
        return cls(
            rank=int(os.environ.get("RANK", 0)),
            size=int(os.environ.get("WORLD_SIZE", 1)),
            local_rank=int(os.environ.get("LOCAL_RANK", 0)),
        )

    @property
    def is_main(self) -> bool:
        """The process that writes the log and the adapter."""
        return self.rank == 0

    def share(self, group: Sequence[Batch]) -> list[tuple[int, Batch]]:
        """This process's part of a global batch (the step's micro-batches), each with its
        index in `group`.

        Whole micro-batches when they divide evenly (the accumulation per process shrinks by
        the number of processes), else a slice of the rows of every micro-batch.
        """
        if self.size == 1:
            return list(enumerate(group))
        if len(group) % self.size == 0:
            per_process = len(group) // self.size
            first = self.rank * per_process
            return [(index, group[index]) for index in range(first, first + per_process)]
        slices = ((index, row_slice(batch, self.rank, self.size)) for index, batch in enumerate(group))
        return [(index, part) for index, part in slices if part is not None]

    def layout(self, accumulation: int, batch_size: int) -> dict[str, int]:
        """Micro-batches per step and rows per micro-batch of each process (for the log)."""
        if accumulation % self.size == 0:
            micro_batches, rows = accumulation // self.size, batch_size
        else:
            micro_batches, rows = accumulation, -(-batch_size // self.size)
        return {"micro_batches_per_process": micro_batches, "rows_per_micro_batch": rows}

    def sum_gradients(self, params: Sequence[torch.Tensor]) -> None:
        """Replace each parameter's gradient by its sum over the processes (one all_reduce)."""
        if self.size == 1:
            return
        import torch
        import torch.distributed as dist

        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.detach().flatten().float() for g in grads])
        with _collective():
            dist.all_reduce(flat)
        offset = 0
        for param in params:
            count = param.numel()
            param.grad = flat[offset : offset + count].view_as(param).to(param.dtype)
            offset += count

    def sum(self, values: Sequence[float]) -> list[float]:
        """Each value summed over the processes (float64, so counts stay exact)."""
        if self.size == 1:
            return list(values)
        import torch
        import torch.distributed as dist

        total = torch.tensor(list(values), dtype=torch.float64, device=self._device())
        with _collective():
            dist.all_reduce(total)
        return total.tolist()

    def gather(self, value: int) -> list[int]:
        """`value` from every process, in rank order."""
        if self.size == 1:
            return [value]
        import torch
        import torch.distributed as dist

        mine = torch.tensor([value], dtype=torch.int64, device=self._device())
        every = [torch.zeros_like(mine) for _ in range(self.size)]
        with _collective():
            dist.all_gather(every, mine)
        return [int(t.item()) for t in every]

    def same_start(self, params: Sequence[torch.Tensor]) -> None:
        """Every process starts from rank 0's trainable weights (they are seeded alike anyway)."""
        if self.size == 1:
            return
        import torch.distributed as dist

        with _collective():
            for param in params:
                dist.broadcast(param.data, src=0)

    def _device(self):
        import torch
        import torch.distributed as dist

        return torch.device("cuda") if dist.get_backend() == "nccl" else torch.device("cpu")
