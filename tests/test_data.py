"""The data layer: loading local files, templates, tokenizing, splitting, calibration samples."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from olivepress.data import (
    DataConfig,
    PreProcessDataConfig,
    calibration_samples,
    data_config_from_flags,
    example_data_path,
    heldout_names,
    heldout_text,
    load_records,
    preview_texts,
    render_texts,
    shipped_text,
    tokenize_corpus,
    train_eval_split,
    training_examples,
    unescape_cli_template,
)
from olivepress.data.tokenize import IGNORE_INDEX, chunk_stream
from olivepress.errors import OlivepressError

SEED_TEMPLATE = r"<|user|>\n{prompt}<|end|>\n<|assistant|>\n{response}<|end|>"  # as typed in the seed lab


@pytest.fixture(autouse=True)
def _olivepress_home(tmp_path_factory, monkeypatch) -> Path:
    # Keep the datasets cache of these tests out of the real ~/.cache/olivepress.
    home = tmp_path_factory.getbasetemp() / "olivepress-home"
    monkeypatch.setenv("OLIVEPRESS_HOME", str(home))
    return home


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from transformers import AutoTokenizer

    from tiny_models import save_tiny_tokenizer

    folder = tmp_path_factory.mktemp("tok")
    save_tiny_tokenizer(folder)
    return AutoTokenizer.from_pretrained(folder)


def config(data_files, data_name: str = "json", split: str = "train", **pre) -> DataConfig:
    return DataConfig(
        name="test",
        load_dataset_config={"data_name": data_name, "data_files": data_files, "split": split},
        pre_process_data_config=pre,
    )


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


ROWS = [{"prompt": f"question {i}", "response": f"answer {i}"} for i in range(10)]


# --- loading -------------------------------------------------------------------------------


def test_loads_json_lines_json_csv_parquet_and_text(tmp_path, _olivepress_home):
    import pandas as pd

    write_jsonl(tmp_path / "d.jsonl", ROWS)
    (tmp_path / "d.json").write_text(json.dumps(ROWS), encoding="utf-8")
    pd.DataFrame(ROWS).to_csv(tmp_path / "d.csv", index=False)
    pd.DataFrame(ROWS).to_parquet(tmp_path / "d.parquet")
    (tmp_path / "d.txt").write_text("first line\nsecond line\n", encoding="utf-8")

    for name, loader in [("d.jsonl", "json"), ("d.json", "json"), ("d.csv", "csv"), ("d.parquet", "parquet")]:
        records = load_records(config(str(tmp_path / name), loader))
        assert records.to_list() == ROWS, name
    assert load_records(config(str(tmp_path / "d.txt"), "text"))["text"] == ["first line", "second line"]
    assert (_olivepress_home / "datasets").is_dir()  # the cache lives under OLIVEPRESS_HOME


def test_relative_paths_split_mapping_and_max_samples(tmp_path, monkeypatch):
    write_jsonl(tmp_path / "train.jsonl", ROWS)
    write_jsonl(tmp_path / "test.jsonl", ROWS[:3])
    monkeypatch.chdir(tmp_path)
    assert len(load_records(config("train.jsonl"))) == 10
    assert len(load_records(config({"train": "train.jsonl", "test": "test.jsonl"}, split="test"))) == 3
    first = load_records(config("train.jsonl", max_samples=4))
    assert first["prompt"] == [f"question {i}" for i in range(4)]


def test_col_filters_keep_the_matching_records_before_max_samples(tmp_path):
    rows = [{"text": f"line {i}", "language": "Python" if i % 3 == 0 else "Go", "n": i} for i in range(12)]
    data = write_jsonl(tmp_path / "d.jsonl", rows)

    def filtered(filters, **pre) -> DataConfig:
        made = config(str(data), **pre)
        load = made.load_dataset_config.model_copy(update={"col_filters": filters})
        return made.model_copy(update={"load_dataset_config": load})

    assert load_records(filtered({"language": "Python"}))["n"] == [0, 3, 6, 9]
    assert load_records(filtered({"language": "Python"}, max_samples=2))["n"] == [0, 3]
    assert load_records(filtered({"language": "Go", "n": 4}))["n"] == [4]
    with pytest.raises(OlivepressError, match=r"column 'langauge'.*did you mean 'language'"):
        load_records(filtered({"langauge": "Python"}))
    with pytest.raises(OlivepressError, match=r"no record matches col_filters"):
        load_records(filtered({"language": "Rust"}))


def test_seed_travel_data_with_crlf_loads_and_renders(travel_data, tokenizer):
    lines = [ln for ln in travel_data.read_bytes().split(b"\r\n") if ln.strip()]
    cfg = data_config_from_flags(str(travel_data), data_name="json", text_template=SEED_TEMPLATE)
    records = load_records(cfg)
    assert len(records) == len(lines)
    texts = render_texts(records, cfg.pre_process_data_config)
    first = json.loads(lines[0])
    assert texts[0] == f"<|user|>\n{first['prompt']}<|end|>\n<|assistant|>\n{first['response']}<|end|>"
    assert not any("\r" in t for t in texts)


def test_missing_file_is_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OlivepressError, match=r"data file 'nope\.jsonl' not found"):
        load_records(config("nope.jsonl"))


def test_invalid_json_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"prompt": "a", "response": "b"}\r\n{"prompt": "c" "response": "d"}\r\n', encoding="utf-8"
    )
    with pytest.raises(OlivepressError, match=r"bad\.jsonl.*line 2"):
        load_records(config(str(bad)))


def test_invalid_json_among_several_files_names_the_bad_one(tmp_path):
    good = write_jsonl(tmp_path / "good.jsonl", ROWS)
    bad = tmp_path / "broken.jsonl"
    bad.write_text('{"prompt": "a"}\n{oops\n', encoding="utf-8")
    with pytest.raises(OlivepressError, match=r"broken\.jsonl.*line 2") as info:
        load_records(config([str(good), str(bad)]))
    assert "good.jsonl" not in str(info.value)


def test_invalid_csv_names_file(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text('prompt,response\n"unclosed,quote\n', encoding="utf-8")
    with pytest.raises(OlivepressError, match=r"bad\.csv.*as CSV"):
        load_records(config(str(bad), "csv"))


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_empty_data_is_an_error(tmp_path, content):
    empty = tmp_path / "empty.jsonl"
    empty.write_text(content, encoding="utf-8")
    with pytest.raises(OlivepressError, match=r"empty\.jsonl.*(empty|no records)"):
        load_records(config(str(empty)))


def test_hub_data_name_is_refused_with_the_local_loaders(tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", ROWS)
    with pytest.raises(OlivepressError, match=r"'tatsu-lab/alpaca'.*hub.*json, csv, parquet, text"):
        load_records(config(str(data), "tatsu-lab/alpaca"))
    with pytest.raises(OlivepressError, match=r"did you mean 'json'"):
        load_records(config(str(data), "jsn"))


def test_azure_data_files_is_refused():
    azure = {"type": "azureml_datastore", "config": {"datastore_name": "workspaceblobstore"}}
    with pytest.raises(OlivepressError, match=r"azureml_datastore.*local files"):
        config(azure)


def test_unknown_split_says_what_exists(tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", ROWS)
    with pytest.raises(OlivepressError, match=r"split 'validation'.*'train'"):
        load_records(config(str(data), split="validation"))


# --- templates -----------------------------------------------------------------------------


def test_template_with_spaced_field_names_and_other_braces():
    records = [{"Question": "Why?", "Best Answer": "Because {it} is."}]
    pre = PreProcessDataConfig(
        text_cols=["Question", "Best Answer"],
        text_template='Q: {Question}\nA: {Best Answer} {"format": 1} {{Question}}',
    )
    # Values are inserted verbatim (their braces too); braces that are not fields stay as written.
    assert render_texts(records, pre) == ['Q: Why?\nA: Because {it} is. {"format": 1} {Question}']


def test_template_field_missing_from_data_names_it_and_the_fields():
    pre = PreProcessDataConfig(text_template="{prompt} => {answer}")
    with pytest.raises(
        OlivepressError, match=r"template uses field 'answer'.*fields are 'prompt', 'response'"
    ):
        render_texts(ROWS, pre)


def test_null_value_names_the_record():
    rows = [*ROWS[:2], {"prompt": "q", "response": None}]
    with pytest.raises(OlivepressError, match=r"record 3 .*'response'"):
        render_texts(rows, PreProcessDataConfig(text_template="{prompt} {response}"))


def test_text_field_text_cols_and_default_text_field():
    assert render_texts(ROWS[:1], PreProcessDataConfig(text_field="response")) == ["answer 0"]
    joined = render_texts(ROWS[:1], PreProcessDataConfig(text_cols=["prompt", "response"]))
    assert joined == ["question 0\nanswer 0"]
    assert render_texts([{"text": "plain"}], PreProcessDataConfig()) == ["plain"]
    with pytest.raises(OlivepressError, match=r"text_field uses field 'body'"):
        render_texts(ROWS, PreProcessDataConfig(text_field="body"))


def test_no_way_to_make_text_is_an_error():
    with pytest.raises(OlivepressError, match=r"'prompt', 'response'.*--text_template"):
        render_texts(ROWS, PreProcessDataConfig())
    with pytest.raises(OlivepressError, match=r"text_template and text_field"):
        render_texts(ROWS, PreProcessDataConfig(text_template="{prompt}", text_field="prompt"))


def test_chat_template_from_messages_and_from_prompt_response(tokenizer):
    pre = PreProcessDataConfig(use_chat_template=True)
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    expected = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nhello<|im_end|>\n"
    assert render_texts([{"messages": messages}], pre, tokenizer) == [expected]
    assert render_texts([{"prompt": "hi", "response": "hello"}], pre, tokenizer) == [expected]
    with pytest.raises(OlivepressError, match="no chat template"):
        render_texts([{"messages": messages}], pre, None)


def test_unescape_cli_template():
    assert (
        unescape_cli_template(SEED_TEMPLATE) == "<|user|>\n{prompt}<|end|>\n<|assistant|>\n{response}<|end|>"
    )
    assert unescape_cli_template(r"a\tb\\nc \d") == "a\tb\\nc \\d"


def test_data_config_from_flags_and_preview(tmp_path):
    data = write_jsonl(tmp_path / "d.jsonl", ROWS)
    other = write_jsonl(tmp_path / "e.jsonl", ROWS[:2])
    cfg = data_config_from_flags(
        [str(data), str(other)], text_template=SEED_TEMPLATE, max_seq_len=64, max_samples=5
    )
    assert cfg.load_dataset_config.data_files == [str(data), str(other)]
    assert cfg.pre_process_data_config.text_template.count("\n") == 3
    assert cfg.pre_process_data_config.source_max_len == 64
    assert preview_texts(cfg, count=2) == [
        "<|user|>\nquestion 0<|end|>\n<|assistant|>\nanswer 0<|end|>",
        "<|user|>\nquestion 1<|end|>\n<|assistant|>\nanswer 1<|end|>",
    ]
    assert len(load_records(cfg)) == 5


# --- tokenizing ----------------------------------------------------------------------------


TEXTS = [f"Travel light, book early, and carry a map of city number {i}." * (1 + i % 3) for i in range(30)]


def test_join_concatenates_with_eos_and_cuts_chunks(tokenizer):
    pre = PreProcessDataConfig(corpus_strategy="join", source_max_len=64)
    chunks = tokenize_corpus(TEXTS, tokenizer, pre)
    per_text = [tokenizer(t)["input_ids"] + [tokenizer.eos_token_id] for t in TEXTS]
    stream = [i for ids in per_text for i in ids]
    assert [i for c in chunks for i in c] == stream[: sum(map(len, chunks))]
    assert all(len(c) == 64 for c in chunks[:-1])
    assert sum(map(len, chunks)) >= len(stream) - 64 // 8  # at most a tail under 1/8 chunk is dropped


def test_chunk_tail_rule():
    stream = list(range(100))
    assert [len(c) for c in chunk_stream(stream, 40)] == [40, 40, 20]  # 20 >= 5: kept
    assert [len(c) for c in chunk_stream(stream, 33)] == [33, 33, 33]  # 1 < 33/8: dropped
    assert [len(c) for c in chunk_stream(stream[:10], 64)] == [10]  # the only chunk is kept


def test_line_by_line_one_sequence_per_sample(tokenizer):
    pre = PreProcessDataConfig(corpus_strategy="line-by-line", source_max_len=40)
    seqs = tokenize_corpus(TEXTS, tokenizer, pre)
    assert len(seqs) == len(TEXTS)
    raw = [len(tokenizer(t)["input_ids"]) + 1 for t in TEXTS]
    assert [len(s) for s in seqs] == [min(n, 40) for n in raw]
    assert any(n < 40 for n in raw) and any(n > 40 for n in raw)  # both cases are exercised
    assert all(s[-1] == tokenizer.eos_token_id for s, n in zip(seqs, raw, strict=True) if n <= 40)


def test_pad_to_max_len_and_training_examples(tokenizer):
    pre = PreProcessDataConfig(corpus_strategy="line-by-line", source_max_len=48, pad_to_max_len=True)
    seqs = tokenize_corpus(TEXTS[:4], tokenizer, pre)
    assert {len(s) for s in seqs} == {48}
    examples = training_examples(TEXTS[:4], tokenizer, pre)
    unpadded = tokenize_corpus(TEXTS[:4], tokenizer, pre.model_copy(update={"pad_to_max_len": False}))
    for ex, raw in zip(examples, unpadded, strict=True):
        n = len(raw)
        assert ex["input_ids"][:n] == raw and ex["labels"][:n] == raw
        assert ex["attention_mask"] == [1] * n + [0] * (48 - n)
        assert ex["labels"][n:] == [IGNORE_INDEX] * (48 - n)


# --- split ---------------------------------------------------------------------------------


def test_split_is_deterministic_and_sized():
    items = list(range(50))
    train, evaluation = train_eval_split(items, 0.3, seed=42)
    assert (train, evaluation) == train_eval_split(items, 0.3, seed=42)
    assert len(evaluation) == 15 and sorted(train + evaluation) == items
    assert train_eval_split(items, 0.3, seed=7)[1] != evaluation
    assert len(train_eval_split(items, 5, seed=0)[1]) == 5
    assert train_eval_split(items, 0, seed=0) == (items, [])


def test_split_of_a_dataset_and_errors(tmp_path):
    records = load_records(config(str(write_jsonl(tmp_path / "d.jsonl", ROWS))))
    train, evaluation = train_eval_split(records, 0.2, seed=0)
    assert (len(train), len(evaluation)) == (8, 2)
    assert set(train["prompt"]).isdisjoint(evaluation["prompt"])
    with pytest.raises(OlivepressError, match="none to train on"):
        train_eval_split(list(range(3)), 3, seed=0)
    with pytest.raises(OlivepressError, match="fraction"):
        train_eval_split(list(range(3)), 1.5, seed=0)


# --- calibration and shipped text ----------------------------------------------------------


def test_calibration_from_shipped_text(tokenizer):
    samples = calibration_samples(tokenizer, num_samples=16, seq_len=128, seed=3)
    assert samples.shape == (16, 128) and samples.dtype == torch.long
    assert torch.equal(samples, calibration_samples(tokenizer, num_samples=16, seq_len=128, seed=3))
    assert not torch.equal(samples, calibration_samples(tokenizer, num_samples=16, seq_len=128, seed=4))
    stream = tokenizer(shipped_text("calibration"))["input_ids"]
    row = samples[0].tolist()
    assert any(stream[i : i + 128] == row for i in range(len(stream) - 127))  # a real window
    # The defaults must work on shipped text alone (the quantizers call it like this).
    assert calibration_samples(tokenizer).shape == (128, 512)


def test_calibration_from_a_data_config(tmp_path, tokenizer):
    data = write_jsonl(tmp_path / "d.jsonl", ROWS * 5)
    cfg = data_config_from_flags(str(data), text_template="{prompt}: {response}")
    samples = calibration_samples(tokenizer, cfg, num_samples=4, seq_len=32, seed=0)
    assert samples.shape == (4, 32)
    assert "question" in tokenizer.decode(samples.flatten().tolist())
    assert torch.equal(samples, calibration_samples(tokenizer, cfg, num_samples=4, seq_len=32, seed=0))


def test_calibration_errors(tmp_path, tokenizer):
    with pytest.raises(OlivepressError, match="at least 1"):
        calibration_samples(tokenizer, num_samples=0)
    data = write_jsonl(tmp_path / "d.jsonl", ROWS[:1])
    cfg = data_config_from_flags(str(data), text_template="{prompt}")
    n_tokens = len(tokenizer("question 0")["input_ids"]) + 1
    with pytest.raises(OlivepressError, match=rf"has {n_tokens} tokens.*lower seq_len to {n_tokens}"):
        calibration_samples(tokenizer, cfg, num_samples=2, seq_len=512)


def _sentences(text: str) -> set[str]:
    return {s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if len(s.split()) > 5}


def test_shipped_texts_are_sizeable_and_distinct():
    calibration, heldout = shipped_text("calibration"), heldout_text("heldout")
    assert len(calibration.split()) >= 3000 and len(heldout.split()) >= 1500
    assert heldout_names() == ["heldout"]
    assert not _sentences(calibration) & _sentences(heldout)
    with pytest.raises(OlivepressError, match="calibration text"):
        heldout_text("calibration")
    with pytest.raises(OlivepressError, match="did you mean 'heldout'"):
        heldout_text("heldot")


def test_example_travel_data_renders():
    cfg = data_config_from_flags(str(example_data_path("travel_qa")), text_template=SEED_TEMPLATE)
    records = load_records(cfg)
    assert len(records) >= 75 and records.column_names == ["prompt", "response"]
    assert len(set(records["prompt"])) == len(records)
    assert all(r.strip() for r in records["response"])
    assert len(render_texts(records, cfg.pre_process_data_config)) == len(records)
