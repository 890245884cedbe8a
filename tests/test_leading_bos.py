"""GenAIModel.encode gives the ids transformers gives: ORT GenAI's tokenizer adds no BOS, so a
model whose tokenizer starts every text with one (Gemma, Llama-3) gets it from olivepress."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from olivepress.runtime.leading_bos import leading_bos

TEXT = "Paris is the capital of France"


def _model_copy(tiny_genai_build: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    shutil.copytree(tiny_genai_build / "model", folder)
    return folder


def _with_bos_template(folder: Path) -> None:
    """Give the folder's tokenizer a post-processor that starts every text with <s>, as
    transformers 5 saves Gemma's and Llama-3's (no add_bos_token in tokenizer_config.json)."""
    from tokenizers.processors import TemplateProcessing
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    bos_id = tokenizer.convert_tokens_to_ids("<s>")
    tokenizer.backend_tokenizer.post_processor = TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos_id)]
    )
    tokenizer.save_pretrained(folder)
    assert "add_bos_token" not in json.loads((folder / "tokenizer_config.json").read_text())


def _hf_ids(folder: Path, text: str) -> list[int]:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)(text).input_ids


def test_a_tokenizer_without_bos_is_left_as_it_is(tiny_genai_build, tmp_path):
    from olivepress.runtime.generate import GenAIModel

    folder = _model_copy(tiny_genai_build, tmp_path)
    assert leading_bos(folder) is None
    assert GenAIModel(folder).encode(TEXT) == _hf_ids(folder, TEXT)


def test_a_leading_bos_from_the_post_processor_is_added_once(tiny_genai_build, tmp_path):
    from olivepress.runtime.generate import GenAIModel

    folder = _model_copy(tiny_genai_build, tmp_path)
    _with_bos_template(folder)
    assert leading_bos(folder) == "<s>"
    model = GenAIModel(folder)
    expected = _hf_ids(folder, TEXT)
    bos_id = expected[0]
    assert [int(t) for t in model.tokenizer.encode(TEXT)] == expected[1:]  # what ORT GenAI alone gives
    assert model.encode(TEXT) == expected
    # a text that already starts with it (a chat template writing the BOS) keeps one
    assert model.encode("<s>" + TEXT) == expected
    assert model.encode("<s>" + TEXT).count(bos_id) == 1


@pytest.mark.parametrize("flag, expected", [(True, "<s>"), (False, None)])
def test_an_explicit_add_bos_token_decides(tmp_path, flag, expected):
    (tmp_path / "tokenizer_config.json").write_text(
        json.dumps({"bos_token": {"content": "<s>"}, "add_bos_token": flag})
    )
    (tmp_path / "tokenizer.json").write_text(json.dumps({"post_processor": None}))
    assert leading_bos(tmp_path) == expected


def test_no_bos_token_means_none(tmp_path):
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"add_bos_token": True}))
    assert leading_bos(tmp_path) is None
