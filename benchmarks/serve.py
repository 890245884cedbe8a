"""`olivepress serve` with two adapters on the embedded SmolLM2-135M-Instruct, under load.

1. The model: the lab's output (`--model DIR` with `--adapter NAME=FILE`s), or one built here:
   two LoRA adapters made with peft on the embedded model (random A, random B scaled down so
   the answers differ from the base model's and from each other's), `auto-opt` int4 with the
   first (served as `travel`), `convert-adapters` for the second (`support`).
2. The server runs in its own process (with an API key); this process is the client:
   - the official `openai` client gets answers for the base model and each adapter, streaming
     and not; each greedy answer must equal `GenAIModel.generate` (what `olivepress generate`
     prints) with that adapter;
   - load: REQUESTS requests mixed across base and adapters, from CONCURRENCY client threads,
     each answer checked against its greedy reference (so an adapter mix-up is a failure);
     p50/p99 latency and aggregate generated tokens/s, against one client doing the same;
   - bad input: malformed JSON, unknown model id, negative max_tokens, oversized prompt,
     missing and wrong API key -> 4xx with an OpenAI error body, and the server still answers.
3. register -> pull -> serve models:/NAME/1 on a fresh registry (a temporary OLIVEPRESS_HOME).

    python benchmarks/serve.py                       # about 5 minutes on 2 cores
    python benchmarks/serve.py --requests 200 --concurrency 8 --max_tokens 32
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _common import print_table, write_result

KEY = "bench-key"
EXAMPLES = (
    Path(__file__).resolve().parents[1] / "src" / "olivepress" / "data" / "examples" / "travel_qa.jsonl"
)
PROMPTS = [
    "What is the best thing to see in Chicago?",
    "What should I pack for a week in Iceland in winter?",
    "How do I get from the airport to the city centre in Tokyo?",
    "My order has not arrived yet. What can I do?",
    "Give me three tips for travelling light.",
]


def load_prompts(count: int) -> list[str]:
    """PROMPTS, then the questions of the travel Q&A olivepress ships, `count` in all: distinct
    prompts, so that what the server can reuse between requests is what real traffic shares
    (the chat template and its system prompt), not whole repeated prompts."""
    lines = EXAMPLES.read_text(encoding="utf-8").splitlines()
    shipped = [json.loads(line)["prompt"] for line in lines if line.strip()]
    return list(dict.fromkeys([*PROMPTS, *shipped]))[:count]


def _httpx():
    try:  # the HTTP client openai brings: httpx2 in its newer releases, httpx before
        import httpx2

        return httpx2
    except ImportError:
        import httpx

        return httpx


def olivepress(*args: str, env: dict[str, str] | None = None) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "olivepress", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
    )
    if done.returncode != 0:
        raise SystemExit(f"olivepress {args[0]} failed:\n{done.stderr[-3000:]}")


def make_adapter(base: Path, out: Path, seed: int, scale: float) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base),
        LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    )
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.mul_(scale)
    model.save_pretrained(out)
    return out


def build(work: Path) -> tuple[Path, dict[str, Path]]:
    from olivepress.models.default import embedded_model_folder

    out = work / "onnx-ao"
    if not (out / "model" / "genai_config.json").is_file():
        base = embedded_model_folder()
        travel = make_adapter(base, work / "travel-peft", seed=1, scale=0.5)
        olivepress(
            "auto-opt",
            "-m",
            "default",
            "--adapter_path",
            str(travel),
            "--adapter_name",
            "travel",
            "--use_ort_genai",
            "--precision",
            "int4",
            "--device",
            "cpu",
            "--provider",
            "CPUExecutionProvider",
            "-o",
            str(out),
            "--cache_dir",
            str(work / "cache"),
        )
    support = work / "support.onnx_adapter"
    if not support.is_file():
        from olivepress.models.default import embedded_model_folder

        peft = make_adapter(embedded_model_folder(), work / "support-peft", seed=2, scale=0.5)
        olivepress("convert-adapters", "--adapter_path", str(peft), "-m", str(out), "-o", str(support))
    return out, {"support": support}


class ServerProcess:
    def __init__(
        self,
        model: str,
        adapters: dict[str, Path],
        env: dict[str, str] | None = None,
        parallel: int = 8,
        batching: bool = True,
    ):
        args = [
            "serve",
            "-m",
            model,
            "--port",
            "0",
            "--api_key",
            KEY,
            "--parallel",
            str(parallel),
            "--served_model_name",
            "smollm2",
            *([] if batching else ["--no_batching"]),
        ]
        for name, file in adapters.items():
            args += ["--adapter", f"{name}={file}"]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "olivepress", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        lines: list[str] = []
        while not lines or "Serving" not in lines[-1]:
            lines.append(self.process.stderr.readline())
            if not lines[-1]:
                raise SystemExit("server did not start:\n" + "".join(lines))
        self.url = lines[-1].split(" on ")[1].split()[0]  # .../v1

    def stop(self) -> int:
        self.process.terminate()
        return self.process.wait(timeout=120)


def references(model, jobs: list[tuple[str, str]], max_tokens: int) -> dict:
    from olivepress.runtime.generate import BASE, SearchOptions

    options = SearchOptions(max_new_tokens=max_tokens)
    return {
        (model_id, prompt): model.generate(
            prompt, options, adapter=BASE if model_id == "smollm2" else model_id
        ).text
        for model_id, prompt in sorted(set(jobs))
    }


def client_checks(url: str, refs: dict, model_ids: list[str], max_tokens: int) -> list[list]:
    import openai

    client = openai.OpenAI(base_url=url, api_key=KEY, max_retries=0, timeout=120)
    listed = [m.id for m in client.models.list()]
    assert listed[0] == "smollm2" and set(model_ids) <= set(listed), listed
    rows = []
    prompt = PROMPTS[0]
    for model_id in model_ids:
        messages = [{"role": "user", "content": prompt}]
        plain = client.chat.completions.create(
            model=model_id, messages=messages, max_tokens=max_tokens, temperature=0
        )
        streamed = "".join(
            chunk.choices[0].delta.content or ""
            for chunk in client.chat.completions.create(
                model=model_id, messages=messages, max_tokens=max_tokens, temperature=0, stream=True
            )
            if chunk.choices
        )
        text = plain.choices[0].message.content
        rows.append(
            [model_id, text == refs[(model_id, prompt)], streamed == text, text[:60].replace("\n", " ")]
        )
    answers = {row[3] for row in rows}
    assert len(answers) == len(rows), (
        "the adapters do not change the answer; the mix-up check would see nothing"
    )
    return rows


class Judge:
    """Which model an answer follows: teacher-forced under each model (one request alone), the
    largest gap between the logit of the answer's token and the model's top logit. An answer
    its own model wrote greedily has gap 0 under that model.

    Batched rows round a little differently from one row alone, so where two tokens are all
    but tied a batched answer can leave its batch-1 reference and go on greedily from there:
    not equal to the reference, but within a small gap of its own model's choices at every
    token. A mix-up follows another model's choices, which its own model would not make."""

    def __init__(self, model, model_ids: list[str]):
        from olivepress.runtime.generate import BASE

        self.model = model  # a GenAIModel with every adapter loaded
        self.adapters = {model_id: BASE if model_id == model_ids[0] else model_id for model_id in model_ids}

    def gap(self, model_id: str, prompt: str, answer: str) -> float:
        import numpy as np

        model = self.model
        prompt_ids = model.encode(model.format_prompt(prompt))
        answer_ids = [int(t) for t in model.tokenizer.encode(answer)]
        if not answer_ids:
            return 0.0
        logits = model.logits(prompt_ids + answer_ids, self.adapters[model_id])[len(prompt_ids) - 1 : -1]
        return float((logits.max(axis=-1) - logits[np.arange(len(answer_ids)), answer_ids]).max())

    def own_gap(self, model_id: str, prompt: str, answer: str) -> float | None:
        """The answer's gap under its own model, or None when another model's is smaller (a mix-up)."""
        gaps = {other: self.gap(other, prompt, answer) for other in self.adapters}
        return gaps[model_id] if gaps[model_id] <= min(gaps.values()) else None


def load(
    url: str,
    jobs: list[tuple[str, str]],
    refs: dict,
    concurrency: int,
    max_tokens: int,
    deadline_s: float,
    judge: Judge,
) -> dict:
    httpx = _httpx()

    started = time.perf_counter()

    def one(job: tuple[str, str]) -> tuple[float, int, str]:
        model_id, prompt = job
        if time.perf_counter() - started > deadline_s:
            return 0.0, 0, "deadline"
        sent = time.perf_counter()
        try:
            response = httpx.post(
                f"{url}/chat/completions",
                headers={"Authorization": f"Bearer {KEY}"},
                timeout=120,
                json={
                    "model": model_id,
                    "messages": [{"role": "user", "content": prompt}],
                    "max_tokens": max_tokens,
                    "temperature": 0,
                },
            )
        except httpx.HTTPError as exc:
            return time.perf_counter() - sent, 0, f"error: {exc}"
        latency = time.perf_counter() - sent
        if response.status_code != 200:
            return latency, 0, f"HTTP {response.status_code}"
        body = response.json()
        return latency, body["usage"]["completion_tokens"], body["choices"][0]["message"]["content"]

    with ThreadPoolExecutor(concurrency) as pool:
        answered = list(pool.map(one, jobs))
    wall = time.perf_counter() - started
    results = []  # (latency, tokens, outcome): judged after the clock stopped
    exact, mix_ups, gaps = 0, [], []
    for job, (latency, tokens, text) in zip(jobs, answered, strict=True):
        if tokens == 0 and (text == "deadline" or text.startswith(("error:", "HTTP "))):
            results.append((latency, tokens, text))
            continue
        exact += text == refs[job]
        gap = 0.0 if text == refs[job] else judge.own_gap(*job, text)
        results.append((latency, tokens, "mix-up" if gap is None else "ok"))
        if gap is None:
            mix_ups.append({"model": job[0], "prompt": job[1], "answer": text, "reference": refs[job]})
        elif text != refs[job]:
            gaps.append(gap)
    latencies = sorted(r[0] for r in results if r[2] == "ok")
    outcomes = [r[2] for r in results]
    return {
        "concurrency": concurrency,
        "requests": len(jobs),
        "ok": outcomes.count("ok"),
        "exact": exact,
        "own_gaps": sorted(gaps),
        "mix_up_answers": mix_ups,
        "failed": sum(o not in ("ok", "mix-up") for o in outcomes),
        "mix_ups": outcomes.count("mix-up"),
        "wall_s": wall,
        "tokens": sum(r[1] for r in results),
        "tokens_per_s": sum(r[1] for r in results) / wall,
        "p50_s": statistics.median(latencies) if latencies else None,
        "p99_s": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] if latencies else None,
    }


def bad_input(url: str) -> list[list]:
    httpx = _httpx()

    auth = {"Authorization": f"Bearer {KEY}", "content-type": "application/json"}
    good = {"model": "smollm2", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    cases = [
        ("malformed JSON", '{"model": "smollm2", "messages": [', auth),
        ("unknown model id", json.dumps({**good, "model": "ft-for-nothing"}), auth),
        ("negative max_tokens", json.dumps({**good, "max_tokens": -3}), auth),
        (
            "oversized prompt",
            json.dumps({**good, "messages": [{"role": "user", "content": "Rome " * 20000}]}),
            auth,
        ),
        ("missing API key", json.dumps(good), {"content-type": "application/json"}),
        (
            "wrong API key",
            json.dumps(good),
            {"Authorization": "Bearer nope", "content-type": "application/json"},
        ),
    ]
    rows = []
    for name, body, headers in cases:
        response = httpx.post(f"{url}/chat/completions", content=body, headers=headers, timeout=120)
        error = response.json().get("error", {})
        still = httpx.post(f"{url}/chat/completions", json=good, headers=auth, timeout=120).status_code
        rows.append([name, response.status_code, error.get("code"), bool(error.get("message")), still])
    return rows


def round_trip(model_dir: Path, refs: dict, max_tokens: int, work: Path) -> list[list]:
    import openai

    home = Path(tempfile.mkdtemp(prefix="olivepress-home-", dir=work))
    env = {"OLIVEPRESS_HOME": str(home)}
    rows = []
    started = time.perf_counter()
    olivepress("register", "--name", "ft-for-travel", "--version", "1", "--path", str(model_dir), env=env)
    rows.append(["register", time.perf_counter() - started, "models:/ft-for-travel/1"])
    started = time.perf_counter()
    olivepress("pull", "models:/ft-for-travel/1", "-o", str(work / "pulled"), env=env)
    rows.append(["pull", time.perf_counter() - started, str(work / "pulled")])
    started = time.perf_counter()
    server = ServerProcess("models:/ft-for-travel/1", {}, env=env)
    try:
        client = openai.OpenAI(base_url=server.url, api_key=KEY, max_retries=0, timeout=120)
        prompt = PROMPTS[0]
        text = (
            client.chat.completions.create(
                model="travel",
                messages=[{"role": "user", "content": prompt}],
                max_tokens=max_tokens,
                temperature=0,
            )
            .choices[0]
            .message.content
        )
        rows.append(
            [
                "serve models:/ft-for-travel/1",
                time.perf_counter() - started,
                f"travel answer matches generate: {text == refs[('travel', prompt)]}",
            ]
        )
    finally:
        server.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", help="An existing output folder (else one is built from the embedded model)."
    )
    parser.add_argument(
        "--adapter", action="append", default=[], metavar="NAME=FILE", help="Extra adapters for --model."
    )
    parser.add_argument("--work_dir", default=str(Path(tempfile.gettempdir()) / "olivepress-bench-serve"))
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument(
        "--single_requests", type=int, default=40, help="Requests for the one-client baseline."
    )
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--prompts", type=int, default=67, help="Distinct prompts the requests cycle through."
    )
    parser.add_argument("--max_tokens", type=int, default=32)
    parser.add_argument("--no_batching", action="store_true", help="Serve with one generator per request.")
    parser.add_argument(
        "--deadline_s", type=float, default=300, help="Requests not started by then count as failed."
    )
    args = parser.parse_args()

    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    if args.model:
        model_dir = Path(args.model)
        adapters = {name: Path(file) for name, file in (pair.split("=", 1) for pair in args.adapter)}
    else:
        model_dir, adapters = build(work)
    from olivepress.runtime.generate import GenAIModel

    model = GenAIModel(model_dir, adapters=adapters)  # one copy for the references and the judge
    model_ids = ["smollm2", *model.adapter_names]
    prompts = load_prompts(args.prompts)
    jobs = [
        (model_ids[i % len(model_ids)], prompts[(i // len(model_ids)) % len(prompts)])
        for i in range(args.requests)
    ]
    single_jobs = jobs[: args.single_requests]
    # Every model's reference for every prompt asked: the judge compares an answer with them all.
    refs = references(model, [(m, p) for m in model_ids for _, p in jobs], args.max_tokens)
    # A mix-up shows only where the models' answers differ: count the prompts where they all do.
    distinct = sum(len({refs[(m, p)] for m in model_ids}) == len(model_ids) for p in {p for _, p in jobs})

    judge = Judge(model, model_ids)
    # The judge must catch a mix-up: another model's reference, given as this model's answer.
    swapped = [
        (m, p, o)
        for p in dict.fromkeys(p for _, p in jobs)
        for m in model_ids
        for o in model_ids
        if o != m and refs[(o, p)] != refs[(m, p)]
    ][:60]
    caught = sum(judge.own_gap(m, p, refs[(o, p)]) is None for m, p, o in swapped)
    server = ServerProcess(str(model_dir), adapters, parallel=args.concurrency, batching=not args.no_batching)
    try:
        checks = client_checks(server.url, refs, model_ids, args.max_tokens)
        single = load(server.url, single_jobs, refs, 1, args.max_tokens, args.deadline_s, judge)
        loaded = load(server.url, jobs, refs, args.concurrency, args.max_tokens, args.deadline_s, judge)
        health = _httpx().get(server.url.removesuffix("/v1") + "/health").json()
        mean_batch, cached = health.get("mean_batch"), health.get("cached_prompt_fraction")
        errors = bad_input(server.url)
    finally:
        exit_code = server.stop()
    trip = round_trip(model_dir, refs, args.max_tokens, work)

    print_table("openai client, greedy", ["model", "= generate", "stream = plain", "answer"], checks)
    header = [
        "clients",
        "requests",
        "ok",
        "= batch-1 answer",
        "failed",
        "mix-ups",
        "p50 s",
        "p99 s",
        "tokens/s",
    ]
    print_table(
        f"load ({args.max_tokens} new tokens per request, "
        f"{'one generator each' if args.no_batching else 'batched'})",
        header,
        [
            [
                r["concurrency"],
                r["requests"],
                r["ok"],
                r["exact"],
                r["failed"],
                r["mix_ups"],
                r["p50_s"],
                r["p99_s"],
                r["tokens_per_s"],
            ]
            for r in (single, loaded)
        ],
    )
    print(f"mean rows per batched step: {mean_batch}; prompt tokens served from the prefix cache: {cached}")
    gaps = loaded["own_gaps"]
    print(
        f"mix-up check: {caught} of {len(swapped)} swapped references caught. The {len(gaps)} answers "
        "that differ "
        f"from their batch-1 reference follow their own model more closely than any other; their largest "
        f"logit gap to its top choice: median {statistics.median(gaps) if gaps else 0:.2f}, "
        f"{sum(g < 1 for g in gaps)} under 1.0 (a decoded answer that re-encodes to other tokens, "
        "e.g. one '\\n\\n' token as two, shows a larger gap)"
    )
    speedup = loaded["tokens_per_s"] / single["tokens_per_s"]
    print(f"aggregate tokens/s at {args.concurrency} clients: {speedup:.2f}x one client")
    print(
        f"prompts whose {len(model_ids)} greedy answers all differ (a mix-up would show): {distinct} "
        f"of {len(set(prompts))}"
    )
    print_table("bad input", ["case", "status", "code", "message", "next request"], errors)
    print_table("register -> pull -> serve (fresh registry)", ["step", "s", "result"], trip)
    print(f"server exit after SIGTERM: {exit_code}")
    write_result(
        "serve",
        {
            "model": str(model_dir),
            "models": model_ids,
            "max_tokens": args.max_tokens,
            "client_checks": checks,
            "batching": not args.no_batching,
            "mean_batch": mean_batch,
            "cached_prompt_fraction": cached,
            "swapped_caught": [caught, len(swapped)],
            "single": single,
            "loaded": loaded,
            "speedup": speedup,
            "prompts_telling_models_apart": distinct,
            "bad_input": errors,
            "round_trip": trip,
        },
    )
    failures = [row for row in checks if not (row[1] and row[2])]
    failures += [row for row in errors if not (400 <= row[1] < 500 and row[3] and row[4] == 200)]
    if single["exact"] != single["requests"]:
        failures.append(f"one client: {single['exact']}/{single['requests']} answers equal generate's")
    if caught < 0.9 * len(swapped):
        failures.append(f"the mix-up check caught {caught} of {len(swapped)} swapped answers")
    if failures or loaded["failed"] or loaded["mix_ups"] or single["mix_ups"] or "False" in trip[-1][2]:
        raise SystemExit(f"checks failed: {failures or 'see the tables'}")
    if speedup < 1.5:
        print(f"note: {speedup:.2f}x is under the 1.5x target")


if __name__ == "__main__":
    main()
