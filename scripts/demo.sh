#!/usr/bin/env bash
# Set everything up, then run the seed lab on the embedded SmolLM2-135M-Instruct with the
# project's own travel Q&A data: quantize (AWQ) -> finetune (LoRA) -> auto-opt (int4 ONNX +
# .onnx_adapter) -> the same prompts with the adapter off and on, side by side, with timings.
# About 6 minutes on a 2-core CPU; a re-run reuses every finished step from the cache.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
export HF_HUB_OFFLINE=1
OUT=models/smollm2
TEMPLATE='<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n{response}<|im_end|>'

echo "== 1/4 quantize: AWQ 4-bit, calibrated on a CPU"
olivepress quantize --model_name_or_path default --trust_remote_code --algorithm awq \
  --output_path "$OUT/awq" --log_level 1

echo "== 2/4 finetune: a LoRA adapter on the quantized model"
olivepress finetune --method lora --model_name_or_path "$OUT/awq" \
  --data_files src/olivepress/data/examples/travel_qa.jsonl --data_name json \
  --text_template "$TEMPLATE" --max_steps 100 --per_device_train_batch_size 4 \
  --output_path "$OUT/ft" --log_level 1

echo "== 3/4 auto-opt: int4 ONNX for ONNX Runtime GenAI, the adapter as an .onnx_adapter"
olivepress auto-opt --model_name_or_path "$OUT/ft/model" --adapter_path "$OUT/ft/adapter" \
  --adapter_name travel --device cpu --provider CPUExecutionProvider --use_ort_genai \
  --output_path "$OUT/onnx-ao" --log_level 1

echo "== 4/4 generate: adapter off (base) and on (travel), side by side"
olivepress generate --model "$OUT/onnx-ao" --active base --active travel \
  --prompt "What is the best thing to see in Chicago?" \
  --prompt "What should I pack for a weekend in Lisbon?" \
  --max_new_tokens 80
