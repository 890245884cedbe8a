"""Continuous batching of greedy generations for the server, on ONNX Runtime directly.

Why not ORT GenAI's own batching: its batched ``Generator`` pads prompts on the left, and on
the CPU builds (GroupQueryAttention with rotary embeddings inside) the padded rows then get
wrong positions; its ``Engine`` gives right answers but cannot set an adapter per request
and measured slower than one generator at a time. Decoding at batch 1 leaves most of a CPU's
work on the table: a token step's cost is mostly unpacking the int4 weights, which a batch
of rows shares (2.3x the tokens/s at batch 2 on SmolLM2-135M, 2 cores).

So the server decodes greedy requests here, on the same model.onnx ORT GenAI runs:

- each request's prompt is run alone (batch 1, as ORT GenAI runs it), giving its first
  token and its key/value cache;
- all requests then decode together, one token per row per step, with their caches packed
  *right*-padded: row b's cache fills positions [0, len_b) and its attention mask is ones
  there, which is the layout GroupQueryAttention reads (it takes each row's length from the
  mask and writes the new key/value at that position); a request joins or leaves the batch
  between steps;
- rows for different adapters share a step through a row gate on the LoRA paths
  (runtime/lora_mix.py); the adapters' tensors come from the same .onnx_adapter files
  ORT GenAI loads.

Rows of a batch never read each other's cache, tokens or adapter: a request's answer depends
on its own prompt and adapter only. Alone, a request gets exactly ORT GenAI's answer; in a
batch it can differ where two tokens are all but tied, because a MatMul over several rows
rounds differently from one over one row.
"""

from __future__ import annotations

import json
import queue
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from olivepress.errors import OlivepressError
from olivepress.runtime.adapter_precision import model_precision, remove_decoders
from olivepress.runtime.adapters import RANK_DIM
from olivepress.runtime.lora_mix import LoraMix, add_row_gates
from olivepress.runtime.lora_switch import inline_lora_branch

_DONE = object()  # end of a request's token stream


@dataclass
class _Row:
    """One request being generated."""

    prompt: list[int]
    max_new_tokens: int
    adapter: str
    tokens: queue.Queue = field(default_factory=queue.Queue)  # generated ids, then _DONE (or an exception)
    cancelled: threading.Event = field(default_factory=threading.Event)  # its reader is gone
    caller_cancelled: threading.Event | None = None  # the caller's own "stop" (a client that went away)
    cache: list[np.ndarray] | None = None  # per past input, [1, heads, length, head_dim]
    length: int = 0  # tokens in the cache
    last: int = 0  # the newest token, the next step's input
    generated: int = 0
    closed: bool = False  # its reader has been told the end


def serving_graph(model_file: Path) -> tuple[bytes, tuple | None]:
    """model.onnx as the batcher runs it (serialized; the weights stay in the external data
    file): flat (a LoRA switch, if any, replaced by its LoRA branch), with LoRA row gates (None
    when it has no LoRA inputs: see lora_mix), and logits for the last position only. A prompt
    needs no more, and the vocabulary projection of every prompt position was a fifth of a
    prompt's time on SmolLM2."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(model_file), load_external_data=False)
    inline_lora_branch(model)  # rows mix adapters and the base model: the LoRA branch serves them all
    remove_decoders(model, RANK_DIM)  # the LoRA matrices are fed as floats (LoraMix decodes them)
    lora = add_row_gates(model)
    graph = model.graph
    producer = {output: node for node in graph.node for output in node.output}
    head = producer.get("logits")
    while head is not None and head.op_type not in ("MatMul", "MatMulNBits", "Gemm"):
        head = producer.get(head.input[0]) if head.input else None  # back through a Cast to the projection
    if head is not None and head.op_type in ("MatMul", "MatMulNBits"):
        last = f"{head.input[0]}/last_position"
        graph.initializer.extend(
            [
                numpy_helper.from_array(np.array([-1], dtype=np.int64), "/serving/last/starts"),
                numpy_helper.from_array(
                    np.array([np.iinfo(np.int64).max], dtype=np.int64), "/serving/last/ends"
                ),
                numpy_helper.from_array(np.array([1], dtype=np.int64), "/serving/last/axes"),
            ]
        )
        slice_last = helper.make_node(
            "Slice",
            [head.input[0], "/serving/last/starts", "/serving/last/ends", "/serving/last/axes"],
            [last],
            name="/serving/last_position",
        )
        head.input[0] = last
        nodes = list(graph.node)
        at = next(i for i, node in enumerate(nodes) if node.name == head.name)
        del graph.node[:]
        graph.node.extend([*nodes[:at], slice_last, *nodes[at:]])  # ONNX wants producers first
    return model.SerializeToString(), lora


def runs_on_cpu(folder: Path) -> bool:
    """Whether ORT GenAI runs this model on the CPU (no provider named in its genai_config):
    the batcher runs on the CPU only, so a model built for a GPU keeps ORT GenAI's generators."""
    session = json.loads((folder / "genai_config.json").read_text())["model"]["decoder"].get(
        "session_options", {}
    )
    return all(not options or set(options) <= {"cpu"} for options in session.get("provider_options", []))


@dataclass(frozen=True)
class BatcherStats:
    """What the batcher has done so far: a snapshot, safe to read from any thread."""

    steps: int  # batched decode steps run
    rows_stepped: int  # rows over those steps
    prompt_tokens: int  # prompt tokens seen...
    cached_prompt_tokens: int  # ...of which these came from the prefix cache

    @property
    def mean_batch(self) -> float | None:
        """Mean rows per decode step; None before the first step."""
        return self.rows_stepped / self.steps if self.steps else None

    @property
    def cached_prompt_fraction(self) -> float | None:
        """Share of prompt tokens the prefix cache spared; None before the first prompt."""
        return self.cached_prompt_tokens / self.prompt_tokens if self.prompt_tokens else None


def has_windowed_cache(folder: Path) -> bool:
    """Whether the model keeps fixed-size sliding-window key/value caches for some layers (the
    builder's default for Gemma-2/3): their attention wants a past of at least the window, and
    the batcher's caches grow from empty, so such a model keeps ORT GenAI's generators."""
    decoder = json.loads((folder / "genai_config.json").read_text())["model"]["decoder"]
    return bool(decoder.get("sliding_window"))


class PrefixCache:
    """The key/value caches of recent prompts, per adapter, so a prompt that begins like an
    earlier one (the chat template's system prompt, a shared instruction, a conversation's
    earlier turns) runs only from where they part. The cache of a prefix is the first
    positions of any longer prompt's cache: each position depends only on those before it."""

    def __init__(self, max_bytes: int = 256 << 20):
        self.max_bytes = max_bytes  # over all entries; a position is 46 kB on SmolLM2-135M (fp32)
        self.entries: OrderedDict[tuple[str, tuple[int, ...]], list[np.ndarray]] = OrderedDict()
        self.bytes = 0

    def longest(self, adapter: str, prompt: list[int]) -> tuple[int, list[np.ndarray]]:
        """How many of `prompt`'s first tokens are cached (always leaving the last one to run,
        whose logits are needed), and their caches."""
        best, found = 0, []
        for (owner, tokens), cache in self.entries.items():
            if owner != adapter:
                continue
            shared = _common_prefix(tokens, prompt, limit=len(prompt) - 1)
            if shared > best:
                best, found, key = shared, cache, (owner, tokens)
        if best:
            self.entries.move_to_end(key)
            found = [array[:, :, :best] for array in found]
        return best, found

    def add(self, adapter: str, prompt: list[int], cache: list[np.ndarray]) -> None:
        key = (adapter, tuple(prompt))
        if key in self.entries:
            return
        entry = [np.ascontiguousarray(array[:, :, : len(prompt)]) for array in cache]
        size = sum(array.nbytes for array in entry)
        if size > self.max_bytes:
            return
        self.entries[key] = entry
        self.bytes += size
        while self.bytes > self.max_bytes:
            _, dropped = self.entries.popitem(last=False)
            self.bytes -= sum(array.nbytes for array in dropped)


def _common_prefix(a: tuple[int, ...] | list[int], b: list[int], limit: int) -> int:
    n = min(len(a), len(b), limit)
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


class BatchedDecoder:
    """Greedy generations for many requests at once: `submit` from any thread, then read the
    returned iterator of token ids. One scheduler thread runs every model call."""

    def __init__(self, folder: Path, adapter_files: dict[str, Path], *, max_batch: int = 8):
        import onnx
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3  # the LoRA inputs are initializers by design: no warning per tensor
        # Spinning threads wait for work by burning the core: with the HTTP server, tokenizing
        # and other sessions on the same cores, that measured 1.8x slower per step.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        graph, lora = serving_graph(folder / "model.onnx")
        if lora is None and adapter_files:
            raise OlivepressError(
                f"{folder / 'model.onnx'} has no LoRA inputs, so adapters cannot be applied to it; "
                "build it from a "
                "model with an adapter (auto-opt --adapter_path) so adapters can be switched"
            )
        # A graph given as bytes reads its external weights from this folder.
        options.add_session_config_entry("session.model_external_initializers_file_folder_path", str(folder))
        self.session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        precision = model_precision(onnx.load(str(folder / "model.onnx"), load_external_data=False))
        self.mix = LoraMix(*lora, adapter_files, precision) if lora else None
        config = json.loads((folder / "genai_config.json").read_text())["model"]
        eos = config.get("eos_token_id", [])
        self.eos = set(eos if isinstance(eos, list) else [eos])
        inputs = {i.name: i for i in self.session.get_inputs()}
        self.past_names = [name for name in inputs if name.startswith("past_key_values.")]
        self.present_names = [name.replace("past_key_values.", "present.") for name in self.past_names]
        kv = inputs[self.past_names[0]]
        self.kv_heads, self.head_dim = (
            config["decoder"]["num_key_value_heads"],
            config["decoder"]["head_size"],
        )
        self.kv_dtype = np.float16 if "float16" in kv.type else np.float32
        self._ortvalue = ort.OrtValue.ortvalue_from_numpy
        self.max_batch = max_batch
        self._packed: tuple[list[int], list, list[_Row]] | None = None  # last step's rows and cache
        self._incoming: queue.Queue[_Row] = queue.Queue()
        self._stop = threading.Event()
        self.prefixes = PrefixCache()
        # Counters for stats(); written by the scheduler thread only.
        self._prompt_tokens = self._cached_prompt_tokens = self._steps = self._rows_stepped = 0
        self._thread = threading.Thread(target=self._loop, name="olivepress-batcher", daemon=True)
        self._thread.start()

    def submit(
        self, prompt: list[int], max_new_tokens: int, adapter: str, cancelled: threading.Event | None = None
    ) -> Iterator[int]:
        """Generated token ids for `prompt` (greedy), as the scheduler produces them; setting
        `cancelled` (or closing the iterator) drops the request at the next step."""
        row = _Row(list(prompt), max_new_tokens, adapter, caller_cancelled=cancelled)
        self._incoming.put(row)
        return self._read(row)

    @staticmethod
    def _read(row: _Row) -> Iterator[int]:
        try:
            while (item := row.tokens.get()) is not _DONE:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            row.cancelled.set()

    def stats(self) -> BatcherStats:
        """Decode steps, rows over them, and prompt tokens (cached and all) so far."""
        return BatcherStats(self._steps, self._rows_stepped, self._prompt_tokens, self._cached_prompt_tokens)

    def close(self) -> None:
        self._stop.set()
        self._incoming.put(None)  # wake the scheduler
        self._thread.join(timeout=60)

    # The scheduler: everything below runs on its thread.

    def _loop(self) -> None:
        active: list[_Row] = []
        while not self._stop.is_set():
            waiting = not active
            try:
                while len(active) < self.max_batch:
                    row = self._incoming.get(block=waiting)
                    waiting = False
                    if row is None:
                        break
                    self._start(row, active)
            except queue.Empty:
                pass
            active[:] = [row for row in active if not self._finished(row)]
            if active:
                self._step(active)
                active[:] = [row for row in active if not self._finished(row)]
        for row in active:
            row.cancelled.set()
            self._finished(row)

    def _finished(self, row: _Row) -> bool:
        """True (and the reader told) once the row has nothing more to generate."""
        gone = row.cancelled.is_set() or (row.caller_cancelled is not None and row.caller_cancelled.is_set())
        if gone or row.generated >= row.max_new_tokens or row.last in self.eos and row.generated:
            if not row.closed:
                row.closed, row.cache = True, None
                row.tokens.put(_DONE)
            return True
        return False

    @staticmethod
    def _emit(row: _Row, token: int) -> None:
        row.last = token
        row.generated += 1
        row.tokens.put(token)

    def _run(
        self, adapters: list[str], input_ids: np.ndarray, mask: np.ndarray, pasts: list
    ) -> tuple[np.ndarray, list]:
        """Logits of the last position, and the present caches as OrtValues. `pasts` are
        OrtValues (a previous step's output) or arrays."""
        arrays = {
            "input_ids": input_ids,
            "attention_mask": mask,
            **(self.mix.feed(adapters) if self.mix else {}),
        }
        feed = {}
        for name, past in zip(self.past_names, pasts, strict=True):
            (arrays if isinstance(past, np.ndarray) else feed)[name] = past
        # An OrtValue made from an array reads the array's memory: `arrays` keeps them alive.
        feed.update((name, self._ortvalue(array)) for name, array in arrays.items())
        logits, *present = self.session.run_with_ort_values(["logits", *self.present_names], feed)
        return logits.numpy()[:, -1], present  # the graph computes the last position only

    def _start(self, row: _Row, active: list[_Row]) -> None:
        """Run the prompt alone (from the longest cached prefix on): the first token and the row's cache."""
        try:
            reused, cached = self.prefixes.longest(row.adapter, row.prompt)
            if not reused:
                cached = [np.zeros((1, self.kv_heads, 0, self.head_dim), dtype=self.kv_dtype)] * len(
                    self.past_names
                )
            logits, present = self._run(
                [row.adapter],
                np.array([row.prompt[reused:]], dtype=np.int64),
                np.ones((1, len(row.prompt)), dtype=np.int64),
                cached,
            )
        except Exception as exc:  # the request fails, the server goes on
            row.tokens.put(exc)
            return
        row.cache, row.length = [value.numpy() for value in present], len(row.prompt)
        self.prefixes.add(row.adapter, row.prompt, row.cache)
        self._prompt_tokens += len(row.prompt)
        self._cached_prompt_tokens += reused
        self._emit(row, int(np.argmax(logits[0])))
        if not self._finished(row):
            active.append(row)

    def _step(self, rows: list[_Row]) -> None:
        """One token for each row, all rows in one batch."""
        members = [id(row) for row in rows]
        packed, self._packed = self._packed, None
        if packed is not None and packed[0] == members:
            pasts = packed[1]  # the same rows as last step: its output is this step's input as it is
        else:
            if packed is not None:  # rows leave or join: take the staying rows' caches out of the old batch
                self._unpack(packed)
            pasts = self._pack(rows)
        width = pasts[0].shape[2] if isinstance(pasts[0], np.ndarray) else pasts[0].shape()[2]
        mask = np.zeros((len(rows), width + 1), dtype=np.int64)
        for b, row in enumerate(rows):
            mask[b, : row.length + 1] = 1
        try:
            logits, present = self._run(
                [row.adapter for row in rows],
                np.array([[row.last] for row in rows], dtype=np.int64),
                mask,
                pasts,
            )
        except Exception as exc:
            for row in rows:
                row.closed, row.cache = True, None
                row.cancelled.set()
                row.tokens.put(exc)
            return
        self._packed = (members, present, list(rows))
        self._steps += 1
        self._rows_stepped += len(rows)
        for b, row in enumerate(rows):
            row.cache = None  # it lives in the batch's cache now, row b
            row.length += 1
            self._emit(row, int(np.argmax(logits[b])))

    @staticmethod
    def _unpack(packed: tuple) -> None:
        _, present, rows = packed
        arrays = [value.numpy() for value in present]
        for b, row in enumerate(rows):
            if not row.closed:
                row.cache = [array[b : b + 1, :, : row.length] for array in arrays]

    def _pack(self, rows: list[_Row]) -> list[np.ndarray]:
        """The rows' caches as one batch, each row's right-padded to the longest."""
        width = max(row.length for row in rows)
        pasts = []
        for index in range(len(self.past_names)):
            past = np.zeros((len(rows), self.kv_heads, width, self.head_dim), dtype=self.kv_dtype)
            for b, row in enumerate(rows):
                past[b, :, : row.length] = row.cache[index][0, :, : row.length]
            pasts.append(past)
        return pasts
