"""The server's continuous batcher (runtime/batching.py) on the tiny fp32 ORT GenAI build."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from olivepress.runtime.batching import BatchedDecoder
from olivepress.runtime.generate import BASE, GenAIModel, SearchOptions

PROMPTS = ["Paris is the capital", "The quick brown fox jumps over the lazy dog and then", "Hi"]
ADAPTERS = [BASE, "default", "second"]


@pytest.fixture(scope="module")
def model(tiny_genai_build: Path, second_adapter_file: Path) -> GenAIModel:
    return GenAIModel(tiny_genai_build, adapters={"second": second_adapter_file})


@pytest.fixture(scope="module")
def decoder(model):
    decoder = BatchedDecoder(model.folder, model.adapter_files, max_batch=8)
    yield decoder
    decoder.close()


def ids_of(model: GenAIModel, prompt: str) -> list[int]:
    return model.encode(model.format_prompt(prompt, use_chat_template=False))


def reference(model: GenAIModel, prompt: str, adapter: str, new_tokens: int) -> list[int]:
    """What ORT GenAI's own generator produces, one request at a time."""
    ids = ids_of(model, prompt)
    generator = model.new_generator(len(ids), SearchOptions(max_new_tokens=new_tokens), adapter)
    generator.append_tokens(ids)
    tokens = []
    while not generator.is_done():
        generator.generate_next_token()
        tokens.append(int(generator.get_next_tokens()[0]))
    return tokens


def test_one_request_at_a_time_matches_ort_genai(model, decoder):
    for adapter in ADAPTERS:
        for prompt in PROMPTS:
            got = list(decoder.submit(ids_of(model, prompt), 12, adapter))
            assert got == reference(model, prompt, adapter, 12), (adapter, prompt)


def test_concurrent_requests_batch_together_and_keep_their_own_answers(model, decoder):
    jobs = [(prompt, adapter) for prompt in PROMPTS for adapter in ADAPTERS] * 2
    expected = {job: reference(model, *job, 16) for job in set(jobs)}
    before = decoder.stats()
    start = threading.Barrier(len(jobs))

    def run(job):
        tokens = decoder.submit(ids_of(model, job[0]), 16, job[1])
        start.wait()  # every request is queued before any is read
        return list(tokens)

    with ThreadPoolExecutor(len(jobs)) as pool:
        answers = list(pool.map(run, jobs))
    # Rows of different lengths and adapters shared steps...
    after = decoder.stats()
    assert (after.rows_stepped - before.rows_stepped) / (after.steps - before.steps) > 1.5
    # ...and each got its own prompt's and adapter's answer (fp32: no near-ties to flip).
    assert answers == [expected[job] for job in jobs]


def test_a_prompt_that_begins_like_an_earlier_one_runs_from_where_they_part(model, decoder):
    prompt = "Paris is the capital of France and the capital of"
    first = ids_of(model, prompt)
    for adapter in ("second", BASE):
        list(decoder.submit(first, 4, adapter))
        before = decoder.stats().cached_prompt_tokens
        longer = ids_of(model, prompt + " fashion, food and")
        assert longer[: len(first)] == first
        got = list(decoder.submit(longer, 10, adapter))
        # An adapter's cache is its own: the same count for each.
        assert decoder.stats().cached_prompt_tokens - before == len(first)
        assert got == reference(model, prompt + " fashion, food and", adapter, 10)


def test_a_cancelled_request_stops_and_the_others_go_on(model, decoder):
    cancelled = threading.Event()
    stopped = decoder.submit(ids_of(model, PROMPTS[0]), 200, "default", cancelled)
    going = decoder.submit(ids_of(model, PROMPTS[1]), 20, "default")
    first = next(stopped)
    cancelled.set()
    rest = list(stopped)
    assert first >= 0 and len(rest) < 199
    assert list(going) == reference(model, PROMPTS[1], "default", 20)


def test_closing_the_reader_drops_the_request(model, decoder):
    tokens = decoder.submit(ids_of(model, PROMPTS[0]), 200, BASE)
    next(tokens)
    tokens.close()
    assert list(decoder.submit(ids_of(model, PROMPTS[2]), 5, BASE)) == reference(model, PROMPTS[2], BASE, 5)


def test_the_row_gate_gives_each_row_its_own_adapters_ranks(model):
    from olivepress.runtime.adapters import read_adapter_file
    from olivepress.runtime.batching import serving_graph
    from olivepress.runtime.lora_mix import GATE, LoraMix

    _, (shapes, dtype) = serving_graph(model.folder / "model.onnx")
    mix = LoraMix(shapes, dtype, model.adapter_files)
    default, second = (read_adapter_file(model.adapter_files[name]) for name in ("default", "second"))
    a_name = next(name for name in default if ".lora_A." in name)
    r1, r2 = default[a_name].shape[1], second[a_name].shape[1]

    alone = mix.feed(["default", "default"])  # one adapter: its own tensors, every rank open
    assert (
        np.array_equal(alone[a_name], default[a_name])
        and alone[GATE].shape == (2, 1, r1)
        and alone[GATE].all()
    )

    mixed = mix.feed([BASE, "second", "default"])  # adapters side by side, in name order
    assert np.array_equal(mixed[a_name], np.concatenate([default[a_name], second[a_name]], axis=1))
    gate = mixed[GATE][:, 0]
    assert not gate[0].any()
    assert not gate[1, :r1].any() and gate[1, r1:].all() and gate[1].size == r1 + r2
    assert gate[2, :r1].all() and not gate[2, r1:].any()
    assert mix.feed([BASE])[GATE].shape == (1, 1, 0)


def test_only_cpu_models_are_batched(tmp_path):
    from olivepress.runtime.batching import runs_on_cpu

    def folder(provider_options: list) -> Path:
        config = {"model": {"decoder": {"session_options": {"provider_options": provider_options}}}}
        (tmp_path / "genai_config.json").write_text(json.dumps(config))
        return tmp_path

    assert runs_on_cpu(folder([]))
    assert not runs_on_cpu(folder([{"cuda": {"enable_cuda_graph": "0"}}]))
