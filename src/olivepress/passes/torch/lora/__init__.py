"""Adapter fine-tuning passes: LoRA, QLoRA, DoRA, LoHa, LoKr (through PEFT).

One module per method (`lora.py`, `qlora.py`, ...) holds that method's options and how it
becomes a PEFT config; `train_adapter.py` is the body they share (data → model → adapter →
training loop in `olivepress.train` → PEFT adapter folder). The pass returns
`HfModel(path=<the base it trained on>, adapter_path=<the adapter>)`, which the engine writes
as `output_dir/model/` + `output_dir/adapter/`; the training log (JSON lines) is
`adapter/training_log.jsonl`, beside the adapter's own files (PEFT ignores it).
"""

from olivepress.passes.registry import command_passes

# `olivepress finetune --method` names -> pass types, as the pass registry lists them.
METHODS = command_passes("finetune")
