"""Trivial systems that give the model's numbers a floor: copy the input, or its first sentence.

A style-transfer model that scores BLEU 60 means little until one sees that copying the
informal input already scores ~55 (the pair differs only in endings); a summary's ROUGE means
little until it beats the dialogue's first sentence. Both baselines need no model.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from multi_task_kobart.tasks import DIALOGUE_SUMMARIZATION

# A speaker tag at the start of a dialogue turn: "A:", "B :", "상담원:".
_SPEAKER = re.compile(r"(?:^|\s)[^\s:]{1,10}\s?:\s")
# A sentence ends at ., ?, ! or … (also doubled, as in ?!), followed by space or the end.
_SENTENCE_END = re.compile(r"(?<=[.?!…])\s+")


def copy_input(inputs: Sequence[str]) -> list[str]:
    """The copy-input baseline: each prediction is its input, verbatim."""
    return [str(text) for text in inputs]


def lead_sentence(text: str) -> str:
    """The first sentence of ``text`` (for a dialogue, of its first turn, speaker tag dropped)."""
    turns = [turn.strip() for turn in _SPEAKER.split(text) if turn.strip()]
    first_turn = turns[0] if turns else ""
    sentences = [part.strip() for part in _SENTENCE_END.split(first_turn) if part.strip()]
    return sentences[0] if sentences else ""


def baseline_predictions(task: str, inputs: Sequence[str]) -> dict[str, list[str]]:
    """Every baseline that applies to ``task``: copy-input always, lead-sentence for summaries."""
    systems = {"copy_input": copy_input(inputs)}
    if task == DIALOGUE_SUMMARIZATION:
        systems["lead_sentence"] = [lead_sentence(text) for text in inputs]
    return systems
