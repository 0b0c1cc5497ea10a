"""The one home for rank logic: who is rank 0, which device/backend/precision, print0.

Everything here reads ``torch.distributed`` (which Ray Train's TorchConfig initialises
before the training function starts), so the same helpers work inside a Ray worker, in a
plain ``torchrun`` process, and in a single-process test where no group exists at all.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    """True when a process group is up and has more than one member."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_rank0() -> bool:
    return get_rank() == 0


def print0(*args: Any, sep: str = " ") -> None:
    """Print a progress line on rank 0 only, flushed.

    Written to ``sys.stderr`` directly (like tqdm): inside Ray Train V2 workers the
    builtin ``print`` is patched to also feed Train's logger, which duplicates lines, and
    plain stdout of a worker is not reliably forwarded to the driver's console.
    """
    if is_rank0():
        sys.stderr.write(sep.join(map(str, args)) + "\n")
        sys.stderr.flush()


def choose_device(use_gpu: bool) -> torch.device:
    """CUDA when asked for and present, else CPU (Ray sets CUDA_VISIBLE_DEVICES per worker)."""
    if use_gpu and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def choose_backend(use_gpu: bool) -> str:
    """NCCL for GPU workers, gloo for CPU workers."""
    return "nccl" if use_gpu else "gloo"


def choose_autocast_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """bf16 autocast on CUDA (``precision`` auto/bf16); fp32 (no autocast) elsewhere.

    bf16 is only used on CUDA: CPU autocast in bf16 is slower than fp32 on most CPUs and
    changes numerics the CPU tests rely on.
    """
    if precision == "fp32" or device.type != "cuda":
        return None
    return torch.bfloat16


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` when a dtype is given, else a no-op context."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    """Sum a list of floats across ranks (identity without a process group)."""
    if not is_distributed():
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()
