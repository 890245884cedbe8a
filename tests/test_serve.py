"""olivepress serve: OpenAI's endpoints on a tiny ORT GenAI model with two adapters."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

try:  # the HTTP client openai brings: httpx2 in its newer releases, httpx before
    import httpx2 as httpx
except ImportError:
    import httpx

from olivepress.runtime.generate import BASE, GenAIModel, SearchOptions
from olivepress.runtime.serve import Server, bound_port, http_server
from test_cli import assert_one_line_error, olivepress

MODELS = {"tiny": BASE, "default": "default", "second": "second"}  # API id -> adapter


class Running:
    """A server on a free loopback port, in a thread of this process."""

    def __init__(
        self, model: GenAIModel, api_key: str | None = None, parallel: int = 4, batching: bool = True
    ):
        self.server = Server(model, base_id="tiny", api_key=api_key, parallel=parallel, batching=batching)
        self.http = http_server(self.server, port=0, shutdown_timeout=10)
        self.thread = threading.Thread(target=self.http.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.http.started:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{bound_port(self.http)}"

    def client(self, api_key: str = "unused") -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=api_key, max_retries=0, timeout=60)

    def stop(self) -> None:
        self.http.should_exit = True
        self.thread.join(timeout=20)
        self.server.close()


@pytest.fixture(scope="module")
def model(tiny_genai_build, second_adapter_file) -> GenAIModel:
    return GenAIModel(tiny_genai_build, adapters={"second": second_adapter_file})


@pytest.fixture(scope="module")
def running(model):
    server = Running(model)
    yield server
    server.stop()


def greedy(model: GenAIModel, prompt, adapter: str, max_tokens: int, chat: bool = True) -> str:
    return model.generate(
        prompt, SearchOptions(max_new_tokens=max_tokens), adapter=adapter, use_chat_template=chat
    ).text


def test_models_lists_the_base_and_each_adapter(running):
    listed = running.client().models.list()
    assert [m.id for m in listed] == ["tiny", "default", "second"]
    assert running.client().models.retrieve("second").id == "second"
    assert httpx.get(f"{running.url}/health").json()["status"] == "ok"


def test_each_model_answers_like_generate_streaming_and_not(running, model):
    client = running.client()
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    answers = set()
    for model_id, adapter in MODELS.items():
        expected = greedy(model, messages, adapter, 16)
        answer = client.chat.completions.create(
            model=model_id, messages=messages, max_tokens=16, temperature=0
        )
        assert answer.choices[0].message.content == expected
        assert answer.usage.completion_tokens == 16 and answer.choices[0].finish_reason == "length"
        stream = client.chat.completions.create(
            model=model_id, messages=messages, max_tokens=16, temperature=0, stream=True
        )
        assert "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices) == expected
        text = (
            client.completions.create(model=model_id, prompt="Paris is the capital", max_tokens=12)
            .choices[0]
            .text
        )
        assert text == greedy(model, "Paris is the capital", adapter, 12, chat=False)
        streamed = client.completions.create(
            model=model_id, prompt="Paris is the capital", max_tokens=12, stream=True
        )
        assert "".join(chunk.choices[0].text for chunk in streamed) == text
        answers.add(expected)
    assert len(answers) == 3  # the adapters change the answer, so the checks above can tell them apart


def test_concurrent_requests_for_different_adapters_stay_apart(running, model):
    prompts = ["Travel light and book early.", "What is the best thing to see in Chicago?"]
    expected = {
        (m, p): greedy(model, p, adapter, 24, chat=False) for m, adapter in MODELS.items() for p in prompts
    }
    jobs = [key for key in expected for _ in range(3)]
    client = running.client()

    def ask(key):
        model_id, prompt = key
        return (
            client.completions.create(model=model_id, prompt=prompt, max_tokens=24, temperature=0)
            .choices[0]
            .text
        )

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, jobs))
    assert answers == [expected[key] for key in jobs]


def test_one_generator_per_request_answers_the_same(model):
    server = Running(model, batching=False)
    try:
        client = server.client()
        for model_id, adapter in MODELS.items():
            answer = (
                client.completions.create(model=model_id, prompt="Paris is the capital", max_tokens=12)
                .choices[0]
                .text
            )
            assert answer == greedy(model, "Paris is the capital", adapter, 12, chat=False)
        assert server.server.batcher is None
    finally:
        server.stop()


def test_stop_strings_max_tokens_and_seeded_sampling(running, model):
    client = running.client()
    full = greedy(model, "The quick brown fox", "second", 20, chat=False)
    stop = full[5:8]
    cut = client.completions.create(
        model="second", prompt="The quick brown fox", max_tokens=20, stop=[stop]
    ).choices[0]
    assert cut.text == full[: full.index(stop)] and cut.finish_reason == "stop"
    streamed = client.completions.create(
        model="second", prompt="The quick brown fox", max_tokens=20, stop=stop, stream=True
    )
    assert "".join(chunk.choices[0].text for chunk in streamed) == cut.text

    def sample(seed: int) -> str:
        return (
            client.completions.create(
                model="default",
                prompt="Paris",
                max_tokens=20,
                temperature=1.0,
                top_p=0.95,
                seed=seed,
                extra_body={"top_k": 50},
            )
            .choices[0]
            .text
        )

    assert sample(3) == sample(3)
    assert len({sample(seed) for seed in range(4)}) > 1


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ('{"model": "tiny", "messages": [', 400, "invalid_json"),
        ('{"model": "travel", "messages": [{"role": "user", "content": "hi"}]}', 404, "model_not_found"),
        ('{"model": "tiny", "max_tokens": -5, "messages": [{"role": "user", "content": "hi"}]}', 400, None),
        ('{"model": "tiny", "messages": []}', 400, None),
        (
            '{"model": "tiny", "prompt": "' + "Paris is the capital of France. " * 80 + '"}',
            400,
            "context_length_exceeded",
        ),
        ('{"model": "tiny", "prompt": "hi", "max_tokens": 100000}', 400, "context_length_exceeded"),
    ],
)
def test_bad_requests_get_openai_errors_and_the_server_keeps_serving(running, body, status, code):
    endpoint = "chat/completions" if "messages" in body else "completions"
    response = httpx.post(
        f"{running.url}/v1/{endpoint}", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"] and error["type"]
    if code:
        assert error["code"] == code
    answer = running.client().completions.create(model="tiny", prompt="hi", max_tokens=3)
    assert answer.usage.completion_tokens == 3


def test_the_client_library_sees_typed_errors(running):
    with pytest.raises(openai.NotFoundError) as raised:
        running.client().chat.completions.create(model="travel", messages=[{"role": "user", "content": "hi"}])
    assert "does not exist" in raised.value.message and raised.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError, match="max_tokens"):
        running.client().completions.create(model="tiny", prompt="hi", max_tokens=-1)


def test_api_key(model):
    server = Running(model, api_key="s3cret")
    try:
        with pytest.raises(openai.AuthenticationError):
            server.client(api_key="wrong").models.list()
        missing = httpx.get(f"{server.url}/v1/models")
        assert missing.status_code == 401 and missing.json()["error"]["code"] == "invalid_api_key"
        unread = httpx.post(
            f"{server.url}/v1/completions", content="{not json", headers={"Authorization": "Bearer nope"}
        )
        assert unread.status_code == 401  # the key is checked before the body is read
        huge = httpx.post(
            f"{server.url}/v1/completions",
            content=b" " * (9 << 20),
            headers={"Authorization": "Bearer s3cret"},
        )
        assert huge.status_code == 413 and huge.json()["error"]["code"] == "request_too_large"
        assert [m.id for m in server.client(api_key="s3cret").models.list()][0] == "tiny"
        assert httpx.get(f"{server.url}/health").status_code == 200  # health checks need no key
    finally:
        server.stop()


def test_binding_beyond_loopback_needs_a_key(tiny_genai_build):
    result = olivepress("serve", "-m", str(tiny_genai_build), "--host", "0.0.0.0", "--port", "0")
    assert_one_line_error(result, r"--api_key")


def test_port_in_use_is_one_line(tiny_genai_build):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = olivepress("serve", "-m", str(tiny_genai_build), "--port", str(taken.getsockname()[1]))
    assert_one_line_error(result, r"cannot listen on 127\.0\.0\.1:\d+")


def test_unknown_adapter_file_is_one_line(tiny_genai_build, tmp_path):
    result = olivepress(
        "serve", "-m", str(tiny_genai_build), "--adapter", f"x={tmp_path / 'none.onnx_adapter'}"
    )
    assert_one_line_error(result, r"adapter file .* does not exist")


def test_sigterm_finishes_in_flight_requests(tiny_genai_build, second_adapter_file):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "olivepress",
            "serve",
            "-m",
            str(tiny_genai_build),
            "--adapter",
            f"second={second_adapter_file}",
            "--port",
            "0",
            "--parallel",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        lines = []
        while not lines or "Serving" not in lines[-1]:  # the CLI talks on stderr
            lines.append(process.stderr.readline())
            assert lines[-1], "".join(lines)
        line = lines[-1]
        url = line.split(" on ")[1].split()[0].removesuffix("/v1")
        body = {"model": "second", "prompt": "hi", "max_tokens": 230, "temperature": 0}
        with ThreadPoolExecutor(16) as pool:
            futures = [
                pool.submit(httpx.post, f"{url}/v1/completions", json=body, timeout=120) for _ in range(16)
            ]
            deadline = time.monotonic() + 30
            while True:  # every request is in (most queue behind --parallel 1), then stop the server
                health = httpx.get(f"{url}/health").json()
                if health["in_flight"] + health["served"] == len(futures):
                    break
                assert time.monotonic() < deadline
                time.sleep(0.01)
            process.send_signal(signal.SIGTERM)
            assert health["in_flight"] > 1, "too fast to test: the requests finished before SIGTERM"
            responses = [future.result() for future in futures]
        assert all(r.status_code == 200 for r in responses), [
            r.text for r in responses if r.status_code != 200
        ]
        assert all(json.loads(r.text)["usage"]["completion_tokens"] > 0 for r in responses)
        # uvicorn passes the signal on once it has shut down, the way a terminated process ends.
        assert process.wait(timeout=60) in (0, -signal.SIGTERM)
    finally:
        if process.poll() is None:
            process.kill()


def test_serve_reads_a_package_archive(tiny_genai_build, tmp_path, monkeypatch):
    from olivepress.share.package import build_package
    from olivepress.share.resolve import local_model

    monkeypatch.setenv("OLIVEPRESS_HOME", str(tmp_path / "home"))
    archive = build_package(tiny_genai_build, tmp_path / "tiny-1.olivepress.tar", name="tiny", version="1")
    folder = local_model(str(archive))
    assert folder.is_relative_to(tmp_path / "home") and (folder / "manifest.json").is_file()
    assert GenAIModel(folder).adapter_names == ["default"]
    assert local_model(str(archive)) == folder  # unpacked once
