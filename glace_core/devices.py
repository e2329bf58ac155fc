"""Which torch device a ``--device`` option names: the one device resolver of glace-ros.

A device spec is one of:

- ``"auto"``: CUDA when it is available, else the CPU;
- ``"cpu"``;
- ``"cuda"`` or ``"cuda:N"``: a CUDA device (N must be a device that exists);
- ``"mps"``: Apple's Metal backend, only where ``torch.backends.mps`` says it is available.

``check_device_spec`` checks the spelling only (for configuration validation, which may run on a
machine other than the one that trains); ``resolve_device`` also checks that the device is there.
Both raise ValueError with a message that names the spec and the problem.

``distributed_context`` places a process of a ``torchrun`` job (WORLD_SIZE > 1): rank r on CUDA
uses ``cuda:LOCAL_RANK``, and the process group is initialised (nccl on CUDA, gloo otherwise).
"""
from __future__ import annotations

import logging
import os
import re

import torch
import torch.distributed as dist

_logger = logging.getLogger(__name__)

#: The device specs, as help texts list them.
DEVICE_SPECS = ("auto", "cpu", "cuda", "cuda:N", "mps")
_CUDA_SPEC = re.compile(r"^cuda(?::(\d+))?$")


def check_device_spec(spec: str) -> str:
    """``spec`` if it is spelled as one of DEVICE_SPECS (availability is not checked), else ValueError."""
    if not isinstance(spec, str):
        raise ValueError(f"device must be a string ({', '.join(DEVICE_SPECS)}), got {type(spec).__name__} {spec!r}")
    if spec in ("auto", "cpu", "mps") or _CUDA_SPEC.match(spec):
        return spec
    raise ValueError(f"device {spec!r} is not one of {', '.join(DEVICE_SPECS)} (N: a CUDA device index)")


def mps_available() -> bool:
    """True where torch was built with MPS and the machine has it."""
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(spec: str) -> torch.device:
    """The torch.device a spec names (see the module docstring).

    Raises ValueError when the spec is misspelt, when CUDA is asked for but not available or the
    index is out of range, and when MPS is asked for but not available.
    """
    spec = check_device_spec(spec)
    if spec == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        _logger.debug("device auto -> %s", device)
        return device
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "mps":
        if not mps_available():
            raise ValueError("device 'mps' was requested but MPS (Apple Metal) is not available on this machine "
                             "or in this torch build; use 'cpu' or 'auto'")
        return torch.device("mps")
    if not torch.cuda.is_available():
        raise ValueError(f"device {spec!r} was requested but CUDA is not available (no GPU or a CPU-only "
                         "torch build); use 'cpu' or 'auto'")
    index = _CUDA_SPEC.match(spec).group(1)
    if index is not None and int(index) >= torch.cuda.device_count():
        raise ValueError(f"device {spec!r} was requested but only {torch.cuda.device_count()} CUDA device(s) "
                         f"exist (cuda:0 to cuda:{torch.cuda.device_count() - 1})")
    return torch.device(spec)


def distributed_context(spec: str) -> tuple[int, int, torch.device, bool]:
    """(rank, world_size, device, initialised_here) of this process.

    Reads RANK, WORLD_SIZE and LOCAL_RANK (set by torchrun; 0, 1, 0 without it). The device is
    ``resolve_device(spec)``; a CUDA device gets an explicit index (LOCAL_RANK under torchrun, else
    the index asked for, 0 by default) and becomes the current CUDA device. With WORLD_SIZE > 1 the
    process group is initialised unless it already is; ``initialised_here`` says whether this call
    did it (the caller then destroys it).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = resolve_device(spec)
    if device.type == "cuda":
        index = int(os.environ.get("LOCAL_RANK", "0")) if world > 1 else (device.index or 0)
        device = torch.device("cuda", index)
        torch.cuda.set_device(device)
    initialised = False
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        initialised = True
    return rank, world, device, initialised
