"""MLflow pyfunc wrapper: a registered MultiTaskKoBART answers ``predict(DataFrame[task, input])``.

``tracking.log_and_register_model`` logs this file as "model from code" (MLflow executes it and
takes the object given to ``set_model``), so no pickled Python object is stored with the model.
The checkpoint directory travels as the ``checkpoint`` artifact. Usage::

    model = tracking.load_pyfunc_model("models:/multi-task-kobart@candidate")  # the resolved store
    model.predict(pd.DataFrame({"task": ["style_transfer"], "input": ["빨리 와"]}),
                  params={"max_new_tokens": 32})          # -> ["..."]

Decoding parameters left out take ``generation.DEFAULT_GENERATION``'s values (as in the demo
and the evaluation).

The package itself (``multi_task_kobart``) must be importable where the model is loaded.
"""

from __future__ import annotations

from typing import Any

import mlflow
import torch
from mlflow.pyfunc import PythonModel

from multi_task_kobart.data.batching import pad_sources
from multi_task_kobart.generation import DEFAULT_GENERATION, GenerationSettings
from multi_task_kobart.tasks import validate_task


class MultiTaskKoBARTPyfunc(PythonModel):
    """Loads the checkpoint once; groups rows by task so each decoder runs one batched generate."""

    def load_context(self, context: Any) -> None:
        from multi_task_kobart.model import MultiTaskKoBART
        from multi_task_kobart.tokenizer import load_tokenizer

        checkpoint = context.artifacts["checkpoint"]
        self.model = MultiTaskKoBART.from_pretrained(checkpoint).eval()
        self.tokenizer = load_tokenizer(checkpoint)

    # model_input carries no annotation on purpose: MLflow reads predict's type hints as a schema
    # and warns on anything but list[...]; the logged signature (task, input columns) is the schema.
    def predict(self, context: Any, model_input, params: dict[str, Any] | None = None) -> list[str]:
        """``model_input``: DataFrame (or list of dicts) with ``task`` and ``input`` columns."""
        rows = _rows(model_input)
        settings = DEFAULT_GENERATION.with_params(params)
        outputs: list[str] = [""] * len(rows)
        by_task: dict[str, list[int]] = {}
        for index, (task, _) in enumerate(rows):
            by_task.setdefault(validate_task(task, allow_auto=True), []).append(index)
        for task, indices in by_task.items():
            texts = [rows[i][1] for i in indices]
            for i, text in zip(indices, self._generate(task, texts, settings)):
                outputs[i] = text
        return outputs

    def _generate(self, task: str, texts: list[str], settings: GenerationSettings) -> list[str]:
        from multi_task_kobart.tokenizer import encode_sources

        max_length = int(getattr(self.model.config, "max_position_embeddings", 1026)) - 2
        ids, _ = encode_sources(self.tokenizer, texts, max_length=min(max_length, 512))
        input_ids, attention_mask = pad_sources(ids, self.tokenizer.pad_token_id)
        with torch.inference_mode():
            generated = self.model.generate(input_ids=input_ids, attention_mask=attention_mask,
                                            task=task, **settings.kwargs())
        return self.tokenizer.batch_decode(generated, skip_special_tokens=True)


def _rows(model_input: Any) -> list[tuple[str, str]]:
    """(task, input) pairs from a DataFrame, a list of dicts or a dict of columns."""
    if hasattr(model_input, "to_dict"):
        model_input = model_input.to_dict(orient="list")
    if isinstance(model_input, dict):
        missing = [col for col in ("task", "input") if col not in model_input]
        if missing:
            raise ValueError(f"model input lacks column(s) {missing}; expected 'task' and 'input'.")
        return [(str(t), str(x)) for t, x in zip(model_input["task"], model_input["input"])]
    if isinstance(model_input, list) and all(isinstance(row, dict) for row in model_input):
        return [(str(row["task"]), str(row["input"])) for row in model_input]
    raise ValueError(f"model input of type {type(model_input).__name__} is not supported; pass a "
                     "DataFrame or a list of {'task', 'input'} dicts.")


mlflow.models.set_model(MultiTaskKoBARTPyfunc())
