"""CPU features that decide the inference precision on CPU, read at run time, and that decision.

``cpu_features()`` is the set of lower-case CPU flags the fast path cares about (:data:`BF16_FEATURES`)
that this CPU has: ``avx512_bf16`` (AVX-512 bf16 dot products, e.g. AMD Zen 4, Intel Cooper Lake)
and ``amx_bf16`` (AMX tiles, Intel Sapphire Rapids and later). They come from torch's own probe
(``torch.cpu._is_avx512_bf16_supported`` / ``_is_amx_tile_supported``, what oneDNN dispatches on),
else from the ``flags`` line of ``/proc/cpuinfo``.

The environment variable ``GLACE_CPU_FEATURES`` replaces the probe: a comma- or space-separated list
of flags (``GLACE_CPU_FEATURES=""``: a CPU without bf16; ``GLACE_CPU_FEATURES=avx512_bf16``: one with
it). Tests use it to simulate both kinds of CPU; it is read at every call.

``resolve_precision(requested, device)`` turns the ``precision`` option (:data:`PRECISIONS`) into what
the CPU fast path runs: ``"bf16"`` (encoder and heads in bfloat16, the heads' output layers in
float32; ``glace_core.fast_inference``) or ``"fp32"``. ``auto`` is bf16 where the CPU has bf16
instructions, else fp32. ``bf16`` on a CPU without them is refused with a reason and fp32 runs:
oneDNN emulates bf16 there and it is slower than fp32, for no gain. CUDA ignores the option (fp16
autocast, as before) and so does the plain-module path (fp32, the reference).
"""
from __future__ import annotations

import functools
import os

__all__ = ["ENV_VAR", "BF16_FEATURES", "PRECISIONS", "cpu_features", "has_bf16", "resolve_precision"]

#: Replaces the CPU probe when set (comma- or space-separated flags; empty: none).
ENV_VAR = "GLACE_CPU_FEATURES"
#: CPU flags that give native bf16 matrix products (either is enough).
BF16_FEATURES = frozenset({"avx512_bf16", "amx_bf16"})
#: Values of the ``precision`` option.
PRECISIONS = ("auto", "fp32", "bf16")


@functools.lru_cache(maxsize=1)
def _probed() -> frozenset[str]:
    """The flags of :data:`BF16_FEATURES` this CPU has (torch's probe, else /proc/cpuinfo)."""
    import torch

    found = set()
    probes = {"avx512_bf16": "_is_avx512_bf16_supported", "amx_bf16": "_is_amx_tile_supported"}
    for flag, name in probes.items():
        probe = getattr(torch.cpu, name, None)
        if probe is None:
            break
        if probe():
            found.add(flag)
    else:
        return frozenset(found)
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            flags = next((line.split(":", 1)[1].split() for line in cpuinfo if line.startswith("flags")), [])
    except OSError:
        flags = []
    return frozenset(BF16_FEATURES & set(flags))


def cpu_features() -> frozenset[str]:
    """The bf16-relevant CPU flags (lower case): ``GLACE_CPU_FEATURES`` when set, else the probe."""
    text = os.environ.get(ENV_VAR)
    if text is not None:
        return frozenset(f.strip().lower() for f in text.replace(",", " ").split() if f.strip())
    return _probed()


def has_bf16() -> bool:
    """True when the CPU (or ``GLACE_CPU_FEATURES``) has native bf16 instructions."""
    return bool(cpu_features() & BF16_FEATURES)


def resolve_precision(requested: str, device_type: str = "cpu") -> tuple[str, str | None]:
    """``(precision the CPU fast path runs, "fp32" or "bf16"; why a "bf16" request runs fp32, or None)``.

    requested: one of :data:`PRECISIONS`; device_type: ``torch.device.type`` (anything but "cpu"
    gives fp32 here: CUDA keeps its fp16 autocast). Raises ValueError for an unknown precision."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {requested!r}")
    if device_type != "cpu" or requested == "fp32":
        return "fp32", None
    if has_bf16():
        return "bf16", None
    if requested == "bf16":
        return "fp32", (f"precision 'bf16' was requested but this CPU has none of {sorted(BF16_FEATURES)} "
                        f"(oneDNN would emulate bf16, slower than fp32): running fp32 "
                        f"(set {ENV_VAR}=avx512_bf16 to force bf16)")
    return "fp32", None
