#!/usr/bin/env bash
# Set everything up, then run the lab on the embedded SmolLM2-135M-Instruct:
# a workflow that builds an int4 ONNX model for ORT GenAI, then generation with it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# shellcheck disable=SC1091
. .venv/bin/activate
export HF_HUB_OFFLINE=1

olivepress run --config examples/smollm2_int4.json
olivepress generate --model models/smollm2-int4 \
  --prompt "What is the capital of France?" \
  --prompt "Give me three tips for a first trip to Rome." \
  --max_new_tokens 80
