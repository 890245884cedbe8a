"""llama.cpp's side of benchmarks/decode.py, run by the Python that has llama-cpp-python.

It loads one GGUF file and answers one JSON request a line on stdin with one JSON line on
stdout, so the benchmark can take llama.cpp's rounds in turn with its own, in one run:

    {"prompt_tokens": [..], "new_tokens": 128}  ->  {"prefill_tok_s": .., "decode_tok_s": ..}
    {"tokenize": "text"}                        ->  {"tokens": [..]}
    {"peak_rss_mb": true}                       ->  {"peak_rss_mb": ..}

Greedy decoding, every new token forced (no stop at end of sequence), like olivepress's side.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
from llama_cpp import Llama


def peak_rss_mb() -> float:
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking parent across exec.
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024


def measure(llm: Llama, prompt_tokens: list[int], new_tokens: int) -> dict[str, float]:
    llm.reset()
    started = time.perf_counter()
    llm.eval(prompt_tokens)
    token = int(np.argmax(llm.scores[llm.n_tokens - 1]))  # the first token comes from the prefill
    prefill_seconds = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(new_tokens):
        llm.eval([token])
        token = int(np.argmax(llm.scores[llm.n_tokens - 1]))
    decode_seconds = time.perf_counter() - started
    return {
        "prefill_tok_s": len(prompt_tokens) / prefill_seconds,
        "decode_tok_s": new_tokens / decode_seconds,
    }


def main() -> None:
    gguf, threads, context = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    llm = Llama(
        model_path=gguf,
        n_threads=threads,
        n_threads_batch=threads,
        n_ctx=context,
        n_batch=context,
        verbose=False,
    )
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        if "tokenize" in request:
            reply = {"tokens": llm.tokenize(request["tokenize"].encode(), add_bos=True, special=True)}
        elif "peak_rss_mb" in request:
            reply = {"peak_rss_mb": peak_rss_mb()}
        else:
            reply = measure(llm, request["prompt_tokens"], request["new_tokens"])
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    main()
