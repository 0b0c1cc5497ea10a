"""Multi-Task KoBART: one shared KoBART encoder with four task decoders."""

from multi_task_kobart.tasks import TASKS, validate_task

__all__ = ["TASKS", "validate_task", "MultiTaskKoBART", "MultiTaskKoBARTConfig"]
__version__ = "0.1.0"


def __getattr__(name: str):
    # Imported lazily so that `import multi_task_kobart` (e.g. in a data-only job) does not
    # pay for torch + transformers until the model is actually used.
    if name in ("MultiTaskKoBART", "MultiTaskKoBARTConfig"):
        from multi_task_kobart import model

        return getattr(model, name)
    raise AttributeError(f"module 'multi_task_kobart' has no attribute {name!r}")
