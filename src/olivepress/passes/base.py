"""The pass contract.

A pass is one module that defines:

- ``Config``: a ``PassConfig`` subclass whose defaults are what a user would expect;
- ``VERSION``: an int, bumped whenever the pass's output for the same input and config changes
  (it is part of the cache key, so old cache entries stop matching);
- ``ACCEPTS``: the handle kinds it takes (``"hf"``, ``"onnx"``);
- ``run(model, config, out_dir, ctx) -> ModelHandle``: writes only into ``out_dir`` and returns
  a handle to the new model. Heavy imports (torch, transformers) go inside ``run`` so that
  loading a config stays fast.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from olivepress.data.config import DataConfig
from olivepress.errors import OlivepressError


class PassConfig(BaseModel):
    """Base for every pass's options: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


@dataclass
class PassContext:
    """What a pass may know about the run beyond its own options."""

    device: str = "cpu"
    execution_provider: str = "CPUExecutionProvider"
    data_configs: dict[str, DataConfig] = field(default_factory=dict)
    scratch_dir: Path = field(default_factory=lambda: Path(".olivepress-cache") / "scratch")
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("olivepress"))

    def data_config(self, ref: str | DataConfig) -> DataConfig:
        """A data config given inline or by the name it has in the workflow's data_configs."""
        if isinstance(ref, DataConfig):
            return ref
        if ref not in self.data_configs:
            known = ", ".join(sorted(self.data_configs)) or "none"
            raise OlivepressError(
                f"data config '{ref}' is not defined; add it under data_configs (defined: {known})"
            )
        return self.data_configs[ref]
