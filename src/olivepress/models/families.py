"""What differs between decoder architectures, in one place, found from the model's config.

A `Family` says, for one Hugging Face `model_type`:

- which Linear layers read the same input, and the module whose output that input is
  (AWQ shares one scale across such a group and folds it into that module);
- how its norms hold their weight (Gemma's RMSNorm multiplies by `1 + weight`), and whether
  it can compute in float16;
- which Linear layers are fused in the checkpoint (Phi-3's `qkv_proj`, `gate_up_proj`) and
  the separate layers the ORT GenAI builder writes for them in the ONNX graph;
- the default LoRA targets;
- the HF architecture the builder knows it by, and how to adapt a config the builder cannot
  read as transformers writes it.

Passes ask `family_of(config)` instead of keeping their own name lists.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from olivepress.errors import OlivepressError

ATTENTION, MLP = "self_attn", "mlp"
# The ORT GenAI builder's block names: /model/layers.{i}/{attn|mlp}/{module}/MatMul
BUILDER_BLOCKS = {ATTENTION: "attn", "attn": "attn", MLP: "mlp"}


@dataclass(frozen=True)
class ScaleGroup:
    """Linear layers of a decoder layer that read the same input, and the module (a norm or a
    Linear) whose output that input is. `source_parts` > 1: the source is a fused Linear whose
    last 1/source_parts of output rows feed the group (Phi-3's v inside qkv_proj)."""

    source: str
    linears: tuple[str, ...]
    source_parts: int = 1


@dataclass(frozen=True)
class FusedLinear:
    """A checkpoint Linear that holds several projections stacked by output rows, and the
    separate layers the ORT GenAI builder makes of it, in row order."""

    name: str
    parts: tuple[str, ...]
    by_heads: bool  # q/k/v: rows split by attention heads; otherwise equal parts

    def part_rows(self, rows: int, num_heads: int, num_kv_heads: int) -> list[int]:
        if not self.by_heads:
            return [rows // len(self.parts)] * len(self.parts)
        head_dim = rows // (num_heads + 2 * num_kv_heads)
        return [num_heads * head_dim, num_kv_heads * head_dim, num_kv_heads * head_dim]


@dataclass(frozen=True)
class Family:
    name: str
    model_types: tuple[str, ...]
    attention_linears: tuple[str, ...]
    mlp_linears: tuple[str, ...]
    scale_groups: tuple[ScaleGroup, ...]
    builder_architecture: str | None  # None: the installed ORT GenAI builder has no converter for it
    norm_offset: float = 0.0  # Gemma's RMSNorm computes norm(x) * (offset + weight)
    fused: tuple[FusedLinear, ...] = ()
    # Gemma's activations outgrow float16 (the float model itself gives NaN logits there), so
    # a checkpoint of it must not ask its loaders to compute in float16.
    float16_safe: bool = True
    adapt_builder_config: Callable[[Any], None] | None = field(default=None, compare=False)

    @property
    def lora_targets(self) -> list[str]:
        """Default LoRA targets: every attention and MLP projection (QLoRA's finding)."""
        return [*self.attention_linears, *self.mlp_linears]

    def block_of(self, module: str) -> str:
        """The builder's block ('attn' or 'mlp') of a Linear's short name."""
        if module in self.attention_linears:
            return "attn"
        if module in self.mlp_linears:
            return "mlp"
        raise OlivepressError(
            f"'{module}' is not an attention or MLP projection of a {self.name} model "
            f"(those are {', '.join(self.lora_targets)})"
        )

    def builder_modules(self, module: str) -> tuple[str, ...]:
        """The names the ORT GenAI builder gives the layer(s) a checkpoint Linear becomes."""
        fused = self.fused_linear(module)
        return fused.parts if fused else (module,)

    def fused_linear(self, module: str) -> FusedLinear | None:
        return next((f for f in self.fused if f.name == module), None)


_LLAMA_ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
_LLAMA_MLP = ("gate_proj", "up_proj", "down_proj")


def _pre_norm_groups(mlp_norm: str) -> tuple[ScaleGroup, ...]:
    """Groups of a pre-norm decoder layer with separate q/k/v and gate/up projections."""
    return (
        ScaleGroup("input_layernorm", ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")),
        ScaleGroup("self_attn.v_proj", ("self_attn.o_proj",)),
        ScaleGroup(mlp_norm, ("mlp.gate_proj", "mlp.up_proj")),
        ScaleGroup("mlp.up_proj", ("mlp.down_proj",)),
    )


def _llama_like(name: str, model_types: tuple[str, ...], architecture: str | None) -> Family:
    return Family(
        name=name,
        model_types=model_types,
        attention_linears=_LLAMA_ATTENTION,
        mlp_linears=_LLAMA_MLP,
        scale_groups=_pre_norm_groups("post_attention_layernorm"),
        builder_architecture=architecture,
    )


def _flatten_gemma3_rope(config: Any) -> None:
    """transformers 5 writes Gemma-3's RoPE per layer type ({'full_attention': {...},
    'sliding_attention': {...}}); the builder reads a flat `rope_parameters` for the global
    layers and `rope_local_base_freq` for the sliding ones."""
    rope = getattr(config, "rope_parameters", None)
    if not isinstance(rope, dict) or "full_attention" not in rope:
        return
    config.rope_parameters = dict(rope["full_attention"])
    config.rope_theta = rope["full_attention"]["rope_theta"]
    sliding = rope.get("sliding_attention") or rope["full_attention"]
    if sliding.get("rope_type", "default") != "default":
        raise OlivepressError(
            f"this Gemma-3 model scales the RoPE of its sliding-window layers ({sliding['rope_type']}); "
            "the ORT GenAI builder gives those layers plain RoPE, so it cannot build this model exactly"
        )
    config.rope_local_base_freq = sliding["rope_theta"]


_GEMMA_NORM_OFFSET = 1.0
FAMILIES: tuple[Family, ...] = (
    _llama_like("llama", ("llama",), "LlamaForCausalLM"),
    _llama_like("mistral", ("mistral",), "MistralForCausalLM"),
    _llama_like("qwen2", ("qwen2",), "Qwen2ForCausalLM"),  # q/k/v carry biases: scaling inputs leaves them
    _llama_like("qwen3", ("qwen3",), "Qwen3ForCausalLM"),  # q_norm/k_norm act per head after q/k
    _llama_like("smollm3", ("smollm3",), "SmolLM3ForCausalLM"),
    _llama_like("olmo", ("olmo",), "OlmoForCausalLM"),  # its LayerNorms have no weight: nothing absorbs
    Family(
        name="phi3",
        model_types=("phi3",),
        attention_linears=("qkv_proj", "o_proj"),
        mlp_linears=("gate_up_proj", "down_proj"),
        scale_groups=(
            ScaleGroup("input_layernorm", ("self_attn.qkv_proj",)),
            ScaleGroup("self_attn.qkv_proj", ("self_attn.o_proj",), source_parts=3),  # v: the last third
            ScaleGroup("post_attention_layernorm", ("mlp.gate_up_proj",)),
            ScaleGroup("mlp.gate_up_proj", ("mlp.down_proj",), source_parts=2),  # up: the second half
        ),
        fused=(
            FusedLinear("qkv_proj", ("q_proj", "k_proj", "v_proj"), by_heads=True),
            FusedLinear("gate_up_proj", ("gate_proj", "up_proj"), by_heads=False),
        ),
        builder_architecture="Phi3ForCausalLM",
    ),
    Family(
        name="gemma",
        model_types=("gemma",),
        attention_linears=_LLAMA_ATTENTION,
        mlp_linears=_LLAMA_MLP,
        scale_groups=_pre_norm_groups("post_attention_layernorm"),
        norm_offset=_GEMMA_NORM_OFFSET,
        float16_safe=False,
        builder_architecture="GemmaForCausalLM",
    ),
    # Gemma-2/3: post_attention_layernorm normalises the attention *output*; the MLP reads
    # pre_feedforward_layernorm. The head soft-caps its logits where the config says so
    # (final_logit_softcapping: Gemma-2's 30; Gemma-3 none).
    Family(
        name="gemma2",
        model_types=("gemma2",),
        attention_linears=_LLAMA_ATTENTION,
        mlp_linears=_LLAMA_MLP,
        scale_groups=_pre_norm_groups("pre_feedforward_layernorm"),
        norm_offset=_GEMMA_NORM_OFFSET,
        float16_safe=False,
        builder_architecture="Gemma2ForCausalLM",
    ),
    Family(
        name="gemma3",
        model_types=("gemma3_text",),
        attention_linears=_LLAMA_ATTENTION,
        mlp_linears=_LLAMA_MLP,
        scale_groups=_pre_norm_groups("pre_feedforward_layernorm"),
        norm_offset=_GEMMA_NORM_OFFSET,
        float16_safe=False,
        builder_architecture="Gemma3ForCausalLM",
        adapt_builder_config=_flatten_gemma3_rope,
    ),
    # OLMo-2 normalises each block's output, not its input: q/k/v and gate/up read the
    # residual stream itself, so only v -> o and up -> down can absorb a scale.
    Family(
        name="olmo2",
        model_types=("olmo2",),
        attention_linears=_LLAMA_ATTENTION,
        mlp_linears=_LLAMA_MLP,
        scale_groups=(
            ScaleGroup("self_attn.v_proj", ("self_attn.o_proj",)),
            ScaleGroup("mlp.up_proj", ("mlp.down_proj",)),
        ),
        builder_architecture=None,
    ),
)
_BY_MODEL_TYPE = {model_type: family for family in FAMILIES for model_type in family.model_types}


def find_family(config: Any) -> Family | None:
    """The family of a config (a transformers config, its dict, or a model_type string), or None."""
    return _BY_MODEL_TYPE.get(_model_type(config))


def family_of(config: Any) -> Family:
    """The family of a config; one clear error for a model_type olivepress does not know."""
    family = find_family(config)
    if family is None:
        model_type = _model_type(config) or "(no model_type in config.json)"
        known = ", ".join(sorted(_BY_MODEL_TYPE))
        raise OlivepressError(
            f"olivepress does not know the {model_type} architecture (it knows {known}); adding it needs "
            "an entry in olivepress/models/families.py: its attention/MLP projections, which of them share "
            "an input, and its norms"
        )
    return family


def builder_family(config: Any) -> Family:
    """The family of a model the ORT GenAI builder is to convert; a clear error when it cannot."""
    family = family_of(config)
    if family.builder_architecture is None:
        raise OlivepressError(
            f"the installed ORT GenAI builder has no converter for {family.name} models; take the generic "
            "ONNX path (auto-opt without --use_ort_genai) or a newer onnxruntime-genai"
        )
    return family


def folder_family(folder: Path) -> Family:
    """The family of the Hugging Face model in `folder` (its config.json)."""
    config_file = Path(folder) / "config.json"
    if not config_file.is_file():
        raise OlivepressError(f"{folder} has no config.json, so its architecture is unknown")
    return family_of(json.loads(config_file.read_text()))


def attention_heads(config: dict[str, Any]) -> tuple[int, int]:
    """(query heads, key/value heads) from an HF config.json or an ORT GenAI genai_config.json."""
    decoder = config.get("model", {}).get("decoder", {}) if "model" in config else {}
    if decoder:
        return decoder["num_attention_heads"], decoder["num_key_value_heads"]
    heads = config["num_attention_heads"]
    return heads, config.get("num_key_value_heads") or heads


def _model_type(config: Any) -> str:
    if isinstance(config, str):
        return config
    if isinstance(config, dict):
        if "model" in config and isinstance(config["model"], dict):  # genai_config.json
            return config["model"].get("type", "")
        return config.get("model_type", "")
    return getattr(config, "model_type", "") or ""
