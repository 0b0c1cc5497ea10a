"""HTTP request/response models of the Serve application and the limits a deployment enforces.

Pydantic checks what is fixed (types, task names, ranges that hold for any model); the
configurable limits (:class:`Limits`, part of the builder's ``ServeArgs``) are checked at the
ingress by :func:`check_generate` / :func:`check_pipeline`, which raise :class:`RequestError` with a
status and a message that names the field and the allowed range. Unknown fields are rejected, so
a misspelt argument (``num_beam``) is a 422 rather than silently ignored. Every range here is one a
model replica can compute: a request that passes never fails in ``generate`` (a sampling
``temperature`` of 1e-300 would overflow the logits to inf, and torch refuses to sample from NaN).

The OpenAPI schema states the whole contract, including what the validators check (task names,
one of ``task``/``tasks`` and of ``text``/``texts``, a text with a non-space character), so a
client generated from it, or a fuzzer (``tests/serving/test_reliability.py``), sends valid requests.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_validator, model_validator

from multi_task_kobart.generation import DEFAULT_GENERATION
from multi_task_kobart.tasks import AUTO, TASKS, validate_task

#: Request fields that are decoding arguments; those left out take DEFAULT_GENERATION's values.
GENERATION_FIELDS = ("max_new_tokens", "min_new_tokens", "num_beams", "do_sample", "temperature", "top_p",
                     "top_k", "no_repeat_ngram_size", "repetition_penalty", "length_penalty")
_SAMPLING_FIELDS = ("temperature", "top_p", "top_k")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
# Fields as the schema shows them (an optional field is one to leave out, not to send as null);
# the validators below check the same and word the errors.
_TASK_OR_AUTO = {"type": "string", "enum": [*TASKS, AUTO]}
_TEXT = {"type": "string", "minLength": 1, "pattern": r"\S"}
_TaskOrAuto = Annotated[str, WithJsonSchema(_TASK_OR_AUTO)]
_Text = Annotated[str, WithJsonSchema(_TEXT)]
_OptionalTaskOrAuto = Annotated[str | None, WithJsonSchema(_TASK_OR_AUTO)]
_OptionalTasks = Annotated[list[str] | None, WithJsonSchema(
    {"type": "array", "items": {"type": "string", "enum": list(TASKS)}, "minItems": 1, "uniqueItems": True})]
_OptionalText = Annotated[str | None, WithJsonSchema(_TEXT)]
_OptionalTexts = Annotated[list[str] | None, WithJsonSchema({"type": "array", "items": _TEXT, "minItems": 1})]


class RequestError(Exception):
    """A request the service refuses: HTTP ``status`` and a message for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class Limits(BaseModel):
    """Per-request bounds; each one protects the replicas from one kind of oversized request."""

    model_config = ConfigDict(extra="forbid")

    max_texts: int = Field(32, ge=1, description="texts per request")
    max_input_chars: int = Field(2000, ge=1, description="characters per text (checked before tokenizing)")
    max_input_tokens: int = Field(256, ge=1, description="tokens per text, <s> and </s> excluded")
    max_new_tokens: int = Field(128, ge=1, description="upper bound for the max_new_tokens argument")
    max_num_beams: int = Field(8, ge=1, description="upper bound for the num_beams argument")
    max_pipeline_steps: int = Field(4, ge=1, description="steps per /v1/pipeline request")
    max_body_bytes: int = Field(1 << 20, ge=1024, description="request body size, checked before it is "
                                "parsed (32 texts of 2000 characters, JSON-escaped, take under 0.4 MiB)")


def _check_task(value: str) -> str:
    return validate_task(value, allow_auto=True)


#: The sampling arguments' need for ``do_sample: true``, as a JSON schema (``_sampling_needs_do_sample``).
_SAMPLING_SCHEMA = {"dependentSchemas": {name: {"required": ["do_sample"], "properties": {"do_sample": {"const": True}}}
                                         for name in _SAMPLING_FIELDS}}


class GenerationParams(BaseModel):
    """Decoding arguments (all optional). Sampling arguments need ``do_sample: true``."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_SAMPLING_SCHEMA)

    max_new_tokens: int | None = Field(None, ge=1, description="tokens to generate at most")
    min_new_tokens: int | None = Field(None, ge=0, description="tokens to generate at least")
    num_beams: int | None = Field(None, ge=1, description="beam width (1: greedy)")
    do_sample: bool | None = Field(None, description="sample instead of greedy/beam search")
    temperature: float | None = Field(None, ge=0.01, le=10, description="sampling temperature")
    top_p: float | None = Field(None, gt=0, le=1, description="nucleus sampling mass")
    top_k: int | None = Field(None, ge=1, description="sample among the k most likely tokens")
    no_repeat_ngram_size: int | None = Field(None, ge=0, le=16, description="no n-gram of this size twice")
    repetition_penalty: float | None = Field(None, ge=0.01, le=10, description="divisor for repeated tokens' logits")
    length_penalty: float | None = Field(None, ge=-10, le=10, description="beam search length exponent")

    @model_validator(mode="after")
    def _sampling_needs_do_sample(self) -> GenerationParams:
        given = [name for name in _SAMPLING_FIELDS if getattr(self, name) is not None]
        if given and not self.do_sample:
            raise ValueError(f"{', '.join(given)} only apply when sampling: add \"do_sample\": true.")
        return self

    def generate_kwargs(self, limits: Limits | None = None) -> dict[str, Any]:
        """DEFAULT_GENERATION's settings with this request's arguments applied. With ``limits``, a
        default above a limit comes down to it: only an argument the client sent can be refused
        (a deployment with ``max_new_tokens: 16`` answers a request that names no length)."""
        given = {name: getattr(self, name) for name in GENERATION_FIELDS if getattr(self, name) is not None}
        base = DEFAULT_GENERATION.replace(**{k: v for k, v in given.items() if hasattr(DEFAULT_GENERATION, k)})
        if limits is not None:
            caps = {"max_new_tokens": limits.max_new_tokens, "num_beams": limits.max_num_beams}
            base = base.replace(**{name: min(getattr(base, name), cap) for name, cap in caps.items()})
        return {**base.kwargs(), **given}


class GenerateRequest(GenerationParams):
    """``POST /v1/generate``: one ``task`` (or ``"auto"``) or several ``tasks``; ``text`` or ``texts``."""

    model_config = ConfigDict(json_schema_extra={
        **_SAMPLING_SCHEMA,
        "allOf": [{"oneOf": [{"required": ["task"]}, {"required": ["tasks"]}]},
                  {"oneOf": [{"required": ["text"]}, {"required": ["texts"]}]}],
        "examples": [{"task": "style_transfer", "text": "이거 좀 도와주세요"}]})

    task: _OptionalTaskOrAuto = Field(None, description="a task name, or 'auto' to let the router choose",
                                      examples=["style_transfer"])
    tasks: _OptionalTasks = Field(None, min_length=1, description="several tasks on the same text(s): "
                                  "one encoder pass, the decoders in parallel")
    text: _OptionalText = Field(None, description="one input text", examples=["이거 좀 도와주세요"])
    texts: _OptionalTexts = Field(None, min_length=1, description="several input texts, answered in order")
    return_token_ids: bool = Field(False, description="also return each output's token ids")

    @field_validator("task")
    @classmethod
    def _known_task(cls, value: str | None) -> str | None:
        return None if value is None else _check_task(value)

    @field_validator("tasks")
    @classmethod
    def _known_distinct_tasks(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        for task in value:
            validate_task(task)  # "auto" picks one decoder; it is not a member of a task list
        if len(set(value)) != len(value):
            raise ValueError(f"tasks {value} name a task twice.")
        return value

    @model_validator(mode="after")
    def _one_of_each(self) -> GenerateRequest:
        if (self.task is None) == (self.tasks is None):
            raise ValueError("give exactly one of 'task' (a task name or 'auto') and 'tasks' (a list).")
        if (self.text is None) == (self.texts is None):
            raise ValueError("give exactly one of 'text' and 'texts'.")
        return self

    def inputs(self) -> list[str]:
        return [self.text] if self.text is not None else list(self.texts or [])

    def task_list(self) -> list[str]:
        return [self.task] if self.task is not None else list(self.tasks or [])


class PipelineRequest(GenerationParams):
    """``POST /v1/pipeline``: each step's output is the next step's input."""

    text: _Text = Field(description="the first step's input", examples=["A: 내일 회의 몇 시에요? B: 오후 2시입니다."])
    steps: list[_TaskOrAuto] = Field(min_length=1, description="task names (or 'auto') in order",
                                     examples=[["dialogue_summarization", "style_transfer"]])

    @field_validator("steps")
    @classmethod
    def _known_steps(cls, value: list[str]) -> list[str]:
        return [_check_task(step) for step in value]


def check_texts(texts: list[str], limits: Limits) -> None:
    """Count and size of the texts against ``limits`` (tokens are checked after tokenizing)."""
    if len(texts) > limits.max_texts:
        raise RequestError(422, f"texts: {len(texts)} texts, the limit is {limits.max_texts} (max_texts).")
    for index, text in enumerate(texts):
        name = "text" if len(texts) == 1 else f"texts[{index}]"
        if not text.strip():
            raise RequestError(422, f"{name} is empty; send at least one non-space character.")
        if len(text) > limits.max_input_chars:
            raise RequestError(422, f"{name} has {len(text)} characters; the limit is "
                                    f"{limits.max_input_chars} (max_input_chars).")
        surrogate = _SURROGATE.search(text)
        if surrogate:  # JSON can escape half of a UTF-16 pair ("\ud800"); the tokenizer cannot take it
            raise RequestError(422, f"{name} is not valid Unicode: a lone surrogate at character "
                                    f"{surrogate.start()}.")


def check_generation(params: GenerationParams, limits: Limits) -> None:
    """Decoding arguments against the configured bounds."""
    kwargs = params.generate_kwargs(limits)
    if kwargs["max_new_tokens"] > limits.max_new_tokens:
        raise RequestError(422, f"max_new_tokens={kwargs['max_new_tokens']} is over the limit of "
                                f"{limits.max_new_tokens}.")
    if kwargs["num_beams"] > limits.max_num_beams:
        raise RequestError(422, f"num_beams={kwargs['num_beams']} is over the limit of {limits.max_num_beams}.")
    if kwargs.get("min_new_tokens", 0) > kwargs["max_new_tokens"]:
        raise RequestError(422, f"min_new_tokens={kwargs['min_new_tokens']} is larger than "
                                f"max_new_tokens={kwargs['max_new_tokens']}.")


def check_generate(request: GenerateRequest, limits: Limits) -> None:
    check_texts(request.inputs(), limits)
    check_generation(request, limits)


def check_pipeline(request: PipelineRequest, limits: Limits) -> None:
    if len(request.steps) > limits.max_pipeline_steps:
        raise RequestError(422, f"steps: {len(request.steps)} steps, the limit is "
                                f"{limits.max_pipeline_steps} (max_pipeline_steps).")
    check_texts([request.text], limits)
    check_generation(request, limits)


class Output(BaseModel):
    input_index: int = Field(description="position of the input in 'texts' (0 for 'text')")
    task: str = Field(description="the decoder that answered (the router's choice for 'auto')")
    text: str
    token_ids: list[int] | None = Field(None, description="generated ids (decoder start, body, </s>), "
                                                          "with return_token_ids")


class ModelInfo(BaseModel):
    uri: str = Field(description="what the deployment was given: a directory or models:/name@alias")
    name: str | None = None
    version: str | None = None
    id: str = Field(description="sha256 prefix of config + weights of the replica that decoded")


class EncoderInfo(BaseModel):
    calls: int = Field(description="encoder deployment calls for this request (always 1)")
    passes: int = Field(description="encoder forward passes over the request's rows: 1, or one per "
                                    "task when the model has per-task adapters")
    per_task_encoding: bool


class GenerateResponse(BaseModel):
    outputs: list[Output] = Field(description="ordered by input, then by the order of 'tasks'")
    task: str | list[str] = Field(description="what was asked: a task, 'auto' or the list of tasks")
    routed: bool = Field(description="the router chose the task ('auto')")
    model: ModelInfo
    encoder: EncoderInfo
    timings_ms: dict[str, Any] = Field(description="tokenize, encode_queue, encode, decode_queue, decode "
                                                   "(slowest decoder), per_task, total")


class PipelineStep(BaseModel):
    task: str = Field(description="the step as asked (a task or 'auto')")
    used: str = Field(description="the decoder that ran")
    input: str
    output: str
    timings_ms: dict[str, Any]


class PipelineResponse(BaseModel):
    output: str = Field(description="the last step's output")
    steps: list[PipelineStep]
    model: ModelInfo
    timings_ms: dict[str, float]


class ErrorResponse(BaseModel):
    detail: str = Field(description="what was wrong and what is allowed")
    request_id: str = Field(description="the request's id in the server logs (also the X-Request-ID header)")
