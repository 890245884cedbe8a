"""Tiny random models for fast unit tests: a real tokenizer trained on a few sentences and
2-layer decoders of every supported family built from a config in memory (seconds, no downloads)."""

from __future__ import annotations

from pathlib import Path

TOKENIZER_TEXT = [
    "The quick brown fox jumps over the lazy dog.",
    "Paris is the capital of France and Rome is the capital of Italy.",
    "Travel light, book early, and carry a map of the city.",
    "What is the best thing to see in Chicago? The lakefront and the architecture.",
    "Models are quantized, fine-tuned and exported to ONNX for on-device inference.",
] * 20


def save_tiny_tokenizer(folder: Path, vocab_size: int = 384) -> None:
    """A byte-level BPE tokenizer with Llama-style special tokens and a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(TOKENIZER_TEXT, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="</s>"
    )
    fast.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    fast.save_pretrained(folder)


def save_tiny_llama(folder: Path, *, hidden_size: int = 64, layers: int = 2, seed: int = 0) -> Path:
    """A random LlamaForCausalLM (hidden 64, 4 heads / 2 KV heads, tied embeddings) with tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    folder.mkdir(parents=True, exist_ok=True)
    save_tiny_tokenizer(folder)
    config = LlamaConfig(
        vocab_size=384,
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()
    model.save_pretrained(folder)
    return folder


# Per family: the transformers config class and what differs from the shared tiny shape
# (hidden 64, 4 query heads / 2 KV heads of 16 dims, MLP 128). Sliding windows of 8 tokens
# are shorter than the test prompts, so the windowed layers really slide.
TINY_FAMILIES: dict[str, tuple[str, dict]] = {
    "llama": ("LlamaConfig", {}),
    "mistral": ("MistralConfig", {"sliding_window": None}),
    "qwen2": ("Qwen2Config", {}),  # q/k/v biases
    "qwen3": ("Qwen3Config", {"head_dim": 16}),
    "smollm3": ("SmolLM3Config", {}),
    "phi3": ("Phi3Config", {"original_max_position_embeddings": 256}),  # fused qkv_proj, gate_up_proj
    "gemma": ("GemmaConfig", {"head_dim": 16}),
    "gemma2": ("Gemma2Config", {"head_dim": 16, "query_pre_attn_scalar": 16, "sliding_window": 8}),
    "gemma3": (
        "Gemma3TextConfig",
        {
            "head_dim": 16,
            "query_pre_attn_scalar": 16,
            "sliding_window": 8,
            "layer_types": ["sliding_attention", "full_attention"],
        },
    ),
    "olmo2": ("Olmo2Config", {}),
}


def save_tiny_decoder(folder: Path, family: str, *, seed: int = 0) -> Path:
    """A random 2-layer decoder of `family` (a key of TINY_FAMILIES) with the tiny tokenizer."""
    import torch
    import transformers

    config_class, extra = TINY_FAMILIES[family]
    folder.mkdir(parents=True, exist_ok=True)
    save_tiny_tokenizer(folder)
    config = getattr(transformers, config_class)(
        vocab_size=384,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
        **extra,
    )
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():  # random norm weights, so a scale folded into a norm is really tested
        for name, param in model.named_parameters():
            if "norm" in name:
                param.uniform_(0.5, 1.5) if param.mean() > 0.5 else param.uniform_(-0.5, 0.5)
    model.save_pretrained(folder)
    return folder


def save_tiny_lora_adapter(base_folder: Path, adapter_folder: Path, *, seed: int = 1) -> Path:
    """A PEFT LoRA adapter for the tiny Llama with non-zero B matrices (so it changes outputs)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(base_folder)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    torch.manual_seed(seed)
    peft_model = get_peft_model(base, config)
    peft_model.save_pretrained(adapter_folder)
    return adapter_folder


def save_tiny_bert(folder: Path) -> Path:
    """A random 2-layer BertModel (hidden 64, 4 heads) with a real tokenizer: an encoder for
    the generic ONNX path."""
    import torch
    from transformers import BertConfig, BertModel

    folder.mkdir(parents=True, exist_ok=True)
    save_tiny_tokenizer(folder)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=384,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=128,
        type_vocab_size=2,
    )
    BertModel(config).save_pretrained(folder)
    return folder
