"""Filling the prompt templates of `self_correction.templates` ({question} {previous} {codes})."""
from __future__ import annotations


def render(template: str, *, question: str, previous: str, codes: list[str]) -> str:
    return template.format(question=question, previous=previous, codes=", ".join(codes) or "none")
