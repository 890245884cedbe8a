"""What the AutoAWQ and GPTQ checkpoint layouts can hold, each rule written once: the options,
the plan (before anything is quantized) and the checkpoint writer (before anything is written)
all ask here.

- AWQ (AutoAWQ GEMM): 4 bits, one group size for every quantized Linear, in_features a
  multiple of it (AutoAWQ's WQLinear_GEMM and the ORT GenAI builder's AWQ loader both assume
  whole groups), out_features a multiple of 8, no act-order.
- GPTQ: 2/4/8 bits, in_features and out_features multiples of the values per int32 word; a
  short last group, act-order and per-module settings are all fine.
"""

from __future__ import annotations

PACKABLE_BITS = (2, 4, 8)
GROUP_SIZES = (256, 128, 64, 32, 16)  # what MatMulNBits (the ORT GenAI builder's op) takes


def check_bits(bits: int) -> int:
    if bits not in PACKABLE_BITS:
        raise ValueError(f"bits={bits} cannot be packed into the AWQ/GPTQ layouts; use 4 or 8 (2 also packs)")
    return bits


def check_group_size(group_size: int) -> int:
    # MatMulNBits (what the ORT GenAI builder emits) takes power-of-two blocks of 16 or more.
    if group_size != -1 and (group_size < 16 or group_size & (group_size - 1)):
        raise ValueError(
            f"group_size={group_size} must be -1 (per output channel) or a power of two >= 16, "
            "e.g. 32, 64, 128"
        )
    return group_size


def fitting_group_sizes(in_features: int) -> list[int]:
    """The group sizes that split `in_features` into whole groups, largest first, then -1."""
    return [g for g in GROUP_SIZES if in_features % g == 0] + [-1]


def largest_fitting_group(in_features: int, group_size: int) -> int | None:
    """The largest power-of-two group of at least 16, no larger than `group_size`, that
    divides `in_features` (None: there is none)."""
    g = group_size
    while g >= 16:
        if in_features % g == 0:
            return g
        g //= 2
    return None


def ragged_message(name: str, in_features: int, group_size: int) -> str:
    fits = ", ".join(str(g) for g in fitting_group_sizes(in_features))
    return (
        f"{name} has in_features={in_features}, not a multiple of group_size={group_size}; "
        f"group sizes that fit: {fits}"
    )


def awq_problem(
    name: str, *, bits: int, group_size: int, in_features: int, out_features: int, layout_group_size: int
) -> str | None:
    """Why the AWQ GEMM layout (one `layout_group_size` for all) cannot hold this Linear, or None."""
    if bits != 4:
        return f"{name} is {bits}-bit and the AWQ layout holds 4-bit weights only"
    if group_size != layout_group_size:
        return (
            f"{name} needs group size {group_size} and the AWQ layout has one group size "
            f"({layout_group_size}) for all layers"
        )
    if group_size != -1 and in_features % group_size:
        return f"{ragged_message(name, in_features, group_size)} (the AWQ layout needs whole groups)"
    if out_features % 8:
        return f"{name} has out_features={out_features}, not a multiple of 8"
    return None


def gptq_problem(name: str, *, bits: int, in_features: int, out_features: int) -> str | None:
    """Why the GPTQ layout cannot pack this Linear, or None."""
    if 32 % bits:
        return f"{name} is {bits}-bit; the GPTQ layout packs 2, 4 or 8 bits"
    per_word = 32 // bits
    if in_features % per_word or out_features % per_word:
        return (
            f"{name} is {out_features}x{in_features}, and {bits}-bit packing needs both to be "
            f"multiples of {per_word}"
        )
    return None
