"""The four task names and the conventions tied to them, kept in one place.

Every other module imports task names from here, so a typo anywhere becomes a
``ValueError`` that lists the valid names instead of a silent ``KeyError``.
"""

from __future__ import annotations

STYLE_TRANSFER = "style_transfer"
DIALOGUE_SUMMARIZATION = "dialogue_summarization"
ROLE_GENERATION = "role_generation"
QA_GENERATION = "qa_generation"

#: Task names in a fixed order; the order is the router head's class index.
TASKS: tuple[str, ...] = (STYLE_TRANSFER, DIALOGUE_SUMMARIZATION, ROLE_GENERATION, QA_GENERATION)

#: ``task="auto"`` asks the router head to choose the decoder.
AUTO = "auto"


def validate_task(task: str, *, allow_auto: bool = False) -> str:
    """Return ``task`` unchanged if it is a known task name, else raise ``ValueError``."""
    if task in TASKS or (allow_auto and task == AUTO):
        return task
    allowed = ", ".join(repr(name) for name in TASKS)
    if allow_auto:
        allowed += f", or {AUTO!r}"
    raise ValueError(f"Unknown task {task!r}. Valid tasks are: {allowed}.")


#: The user's example inputs from the design document, per task (used by the demo and docs).
EXAMPLE_INPUTS: dict[str, tuple[str, ...]] = {
    STYLE_TRANSFER: ("이거 좀 도와주세요", "빨리 와"),
    DIALOGUE_SUMMARIZATION: ("A: 내일 회의 몇 시에요? B: 오후 2시입니다.",),
    ROLE_GENERATION: ("[선생님] 파이썬이란?", "[친구] 주말에 뭐해?"),
    QA_GENERATION: ("질문: 서울의 인구는?", "질문: 인공지능의 장점은?"),
}
