"""The checkpoint's quantized embeddings carried into the ONNX model ModelBuilder wrote.

The ORT GenAI builder reads a quantized lm_head (MatMulNBits with its bits) but writes the
embedding lookup as a float Gather. A checkpoint whose `quantization_config.meta.embeds` says
the embeddings are on a grid (RTN's `embeds`) gets that lookup as GatherBlockQuantized: on
lm_head's own integers where they are lm_head's weights (tied), else on the embeddings rounded
to the recorded grid (which reproduces the checkpoint's integers, the weights being on it).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from olivepress.errors import OlivepressError


def carry_embeddings(model_dir: Path, embeds: dict[str, Any], log: logging.Logger) -> None:
    import onnx

    from olivepress.passes.onnx import embeddings
    from olivepress.passes.onnx.model_files import external_data_files, load_model
    from olivepress.quant.grid import Grid
    from olivepress.runtime.adapters import model_file

    path = model_file(model_dir)
    proto = load_model(path)
    lookup, head = embeddings.find_lookup(proto), embeddings.find_head(proto)
    if lookup is None or lookup.op_type != "Gather":
        log.warning("ModelBuilder: no float embedding lookup to quantize; the embeddings stay as built")
        return
    if embeds.get("tied_to_lm_head") and head is not None and head.op_type == "MatMulNBits":
        embeddings.tie_lookup_to_head(
            proto, lookup, head.node, embeddings.float_lookup_weight(proto, lookup).shape[1]
        )
        log.info(
            "ModelBuilder: embeddings read lm_head's %d-bit weights (GatherBlockQuantized, tied)",
            embeds["bits"],
        )
    else:
        try:
            grid = Grid(
                bits=int(embeds["bits"]), group_size=int(embeds["group_size"]), sym=bool(embeds["sym"])
            )
        except (KeyError, ValueError) as exc:
            raise OlivepressError(
                f"quantization_config.meta.embeds is malformed ({exc}); rerun RTN with embeds"
            ) from None
        embeddings.quantize_lookup(proto, lookup, grid)
        log.info(
            "ModelBuilder: embeddings in %d bits (GatherBlockQuantized, blocks of %d)",
            grid.bits,
            grid.group_size,
        )
    data_files = external_data_files(path)
    location = next(iter(data_files), f"{path.name}.data")
    for name in data_files:
        (model_dir / name).unlink(missing_ok=True)  # onnx appends to an existing data file
    onnx.save_model(
        proto,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=location,
        size_threshold=1024,
    )
