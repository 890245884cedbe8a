"""Accuracy of generated answers: each record becomes a prompt, the model answers greedily, and
the answer is compared with the record's expected one.

- accuracy_score: the answer starts with the expected text (a label such as "joy", or the
  first words of an answer), after normalising case, punctuation and spaces;
- exact_match: the normalised answer is the normalised expected text;
- rouge_l: ROUGE-L F1 (longest common subsequence of words), averaged over records.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from olivepress.data.templates import fill_template, template_fields
from olivepress.errors import OlivepressError
from olivepress.evaluate.backends import Backend
from olivepress.evaluate.config import MetricConfig

_WORD = re.compile(r"\w+", re.UNICODE)


def normalise(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def rouge_l(candidate: str, reference: str) -> float:
    """ROUGE-L F1 over words (Lin 2004, beta = 1)."""
    cand, ref = normalise(candidate), normalise(reference)
    if not cand or not ref:
        return float(cand == ref)
    previous = [0] * (len(ref) + 1)
    for word in cand:
        current = [0]
        for j, ref_word in enumerate(ref, start=1):
            current.append(previous[j - 1] + 1 if word == ref_word else max(previous[j], current[j - 1]))
        previous = current
    lcs = previous[-1]
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(cand), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


def score(answers: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    count = len(references)
    starts = sum(
        normalise(a)[: len(normalise(r))] == normalise(r) for a, r in zip(answers, references, strict=True)
    )
    exact = sum(normalise(a) == normalise(r) for a, r in zip(answers, references, strict=True))
    rouge = sum(rouge_l(a, r) for a, r in zip(answers, references, strict=True))
    return {"accuracy_score": starts / count, "exact_match": exact / count, "rouge_l": rouge / count}


def accuracy(
    backend: Backend, metric: MetricConfig, records: Sequence[Mapping[str, Any]]
) -> dict[str, float]:
    rows = list(records)[: metric.max_samples or None]
    if not rows:
        raise OlivepressError(f"accuracy metric '{metric.name}' has no records to evaluate; check its data")
    fields = set(rows[0])
    missing = [f for f in [*template_fields(metric.prompt_template), metric.label_field] if f not in fields]
    if missing:
        raise OlivepressError(
            f"accuracy metric '{metric.name}': the records have no field(s) {', '.join(missing)} "
            f"(they have {', '.join(sorted(fields))}); set prompt_template and label_field"
        )
    answers = [
        backend.generate(
            fill_template(metric.prompt_template, row), metric.max_new_tokens, metric.use_chat_template
        )
        for row in rows
    ]
    return score(answers, [str(row[metric.label_field]) for row in rows])
