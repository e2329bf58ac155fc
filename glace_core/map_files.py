"""Weights and map files: safe loading, strict checking, the official head layout and sidecar metadata.

Every file goes through ``torch.load(..., weights_only=True)``, so a file that carries pickled
Python objects (possibly malicious) is refused instead of executed. Problems with a file raise
``MapFileError`` (a ValueError) naming the file and what is wrong with it.

A map is a GLACE head file in the official layout (every tensor fp16, buffers included, in
``GlaceHead.state_dict()`` order) plus a sidecar ``<map>.json`` with:
``format``, ``format_version``, ``head`` (the architecture, HeadConfig.to_dict()), ``head_sha256``
(of the head file, to detect a stale sidecar), ``encoder`` (what ``encoder_metadata`` returns: name,
out_channels and, when known, the sha256 of the encoder file) and whatever else the caller passes
(e.g. ``training`` options).

An *ensemble map* (a ``glace_core.head_ensemble.HeadEnsemble``) is one weights-only state dict,
every tensor fp16 (``ensemble_state_dict``): ``{k}.<official head key>`` for head k = 0..K-1 (each
sub-dict is exactly an official GLACE head file's content), then ``routing.descriptors`` (N, 4C)
and ``routing.membership`` (K, N) (1 where mapping frame n belongs to cluster k). Official head
keys never start with ``<digits>.``, so the two layouts cannot be confused; an ensemble of one head
is written as a plain head file. Its sidecar adds ``ensemble`` (K, how the clusters were made).
``save_head`` writes either kind; ``glace_core.network.load_map`` reads either.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import pickle
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from glace_core.head import GlaceHead, HeadConfig, block_width, split_input_channels
from glace_core.head_ensemble import HeadEnsemble
from glace_core.io_utils import atomic_write_bytes, atomic_write_text

_logger = logging.getLogger(__name__)

MAP_FORMAT = "glace-ros-map"
MAP_FORMAT_VERSION = 1
_BLOCK_KEY = re.compile(r"^(\d+)c0\.weight$")
#: Key prefix of the routing index in an ensemble map file.
ROUTING_PREFIX = "routing."
_HEAD_PREFIX = re.compile(r"^(\d+)\.(.+)$")


class MapFileError(ValueError):
    """A weights or map file is unreadable, unsafe, or does not match the expected layout."""


class EncoderMismatchError(ValueError):
    """A map was trained for a different encoder than the one it is used with."""


def sidecar_path(path: str | os.PathLike) -> Path:
    """Path of the metadata sidecar of a map file: ``<path>.json``."""
    return Path(str(os.fspath(path)) + ".json")


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_checkpoint(path: str | os.PathLike) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)`` with clear errors.

    Raises FileNotFoundError if ``path`` does not exist and MapFileError if it is empty, corrupt,
    truncated, or holds pickled objects other than tensors and plain containers.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.is_dir():
        raise MapFileError(f"weights file {path} is a directory")
    if path.stat().st_size == 0:
        raise MapFileError(f"weights file {path} is empty")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only" in str(exc).lower() or "weights_only" in str(exc).lower():
            culprit = next((line.strip() for line in str(exc).splitlines() if "GLOBAL" in line), "")
            raise MapFileError(
                f"refusing to load {path}: it holds pickled Python objects that are not plain tensors "
                f"(only weights-only files are accepted, because unpickling such a file can run code"
                f"{'; ' + culprit if culprit else ''}). Save the state dict of tensors instead "
                f"(torch.save(model.state_dict(), path))") from None
        raise MapFileError(f"weights file {path} is corrupt: {exc}") from exc
    except Exception as exc:  # torch raises RuntimeError, EOFError, ValueError, ... for damaged files
        first_line = str(exc).splitlines()[0] if str(exc) else ""
        raise MapFileError(f"weights file {path} is corrupt or truncated "
                           f"({type(exc).__name__}: {first_line})") from exc


def load_state_dict_file(path: str | os.PathLike) -> "OrderedDict[str, torch.Tensor]":
    """Load a state dict ``{name: tensor}`` (CPU, file dtypes, file order) safely from ``path``.

    Raises MapFileError if the file is unsafe/corrupt, not a dict of str -> floating tensors, or
    holds non-finite values.
    """
    obj = load_checkpoint(path)
    if not isinstance(obj, Mapping):
        raise MapFileError(f"weights file {path} holds a {type(obj).__name__}, expected a state dict "
                           "(a mapping of parameter names to tensors)")
    state_dict: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise MapFileError(f"weights file {path} is not a state dict: entry {key!r} is a "
                               f"{type(value).__name__}, expected a tensor")
        if not value.is_floating_point():
            raise MapFileError(f"weights file {path}: tensor {key!r} has dtype {value.dtype}, "
                               "expected a floating-point dtype")
        if not bool(torch.isfinite(value).all()):
            raise MapFileError(f"weights file {path}: tensor {key!r} contains NaN or infinite values")
        state_dict[key] = value
    if not state_dict:
        raise MapFileError(f"weights file {path} holds an empty state dict")
    return state_dict


def _strip_prefix(state_dict: Mapping[str, torch.Tensor], prefix: str) -> "OrderedDict[str, torch.Tensor]":
    return OrderedDict((k[len(prefix):], v) for k, v in state_dict.items() if k.startswith(prefix))


def select_part(state_dict: Mapping[str, torch.Tensor], part: str,
                source: str = "state dict") -> "OrderedDict[str, torch.Tensor]":
    """The ``part`` ("encoder" or "heads") of a state dict, prefix removed.

    Accepts an unprefixed file (returned as is), a combined network file with ``encoder.``/``heads.``
    prefixes (as ``create_from_split_state_dict`` builds), and a DDP ``module.`` prefix.
    """
    if part not in ("encoder", "heads"):
        raise ValueError(f"part must be 'encoder' or 'heads', got {part!r}")
    sd: Mapping[str, torch.Tensor] = state_dict
    if sd and all(k.startswith("module.") for k in sd):
        sd = _strip_prefix(sd, "module.")
    prefixed = [k for k in sd if k.startswith(("encoder.", "heads."))]
    if not prefixed:
        return OrderedDict(sd)
    if len(prefixed) != len(sd):
        stray = [k for k in sd if not k.startswith(("encoder.", "heads."))][:5]
        raise MapFileError(f"{source}: mixes prefixed (encoder./heads.) and unprefixed keys, e.g. {stray}")
    selected = _strip_prefix(sd, part + ".")
    if selected and all(k.startswith("module.") for k in selected):
        selected = _strip_prefix(selected, "module.")
    if not selected:
        raise MapFileError(f"{source}: has no '{part}.' keys (it holds "
                           f"{sorted({k.split('.', 1)[0] for k in sd})})")
    return selected


def infer_head_config(state_dict: Mapping[str, torch.Tensor], metadata: Mapping[str, Any] | None = None,
                      source: str = "state dict") -> HeadConfig:
    """Infer a head's architecture from its weights (unprefixed, ``heads.``-prefixed or combined).

    blocks: keys matching ``^\\d+c0\\.weight$``; homogeneous: fc3 has 4 outputs; in/h: res3_conv1
    (in = its input width, cross-checked with head_skip); mlp_ratio: res3_conv2 out / h;
    K: centers (1, K, 3, 1, 1), else 1. The global/local split of ``in`` comes from
    ``metadata['head']['global_channels']`` when present, else from ``split_input_channels``.
    """
    sd = select_part(state_dict, "heads", source)
    for key in ("res3_conv1.weight", "res3_conv2.weight", "fc3.weight"):
        if key not in sd:
            raise MapFileError(f"{source} does not look like a GLACE/ACE head: key {key!r} is missing "
                               f"(keys start with {list(sd)[:6]})")
    for key in ("res3_conv1.weight", "res3_conv2.weight", "fc3.weight"):
        if sd[key].ndim != 4:
            raise MapFileError(f"{source}: {key} has shape {tuple(sd[key].shape)}, expected a 1x1 conv (4-D)")
    head_channels, in_channels = (int(s) for s in sd["res3_conv1.weight"].shape[:2])
    if "head_skip.weight" in sd and int(sd["head_skip.weight"].shape[1]) != in_channels:
        raise MapFileError(f"{source}: head_skip.weight input width {int(sd['head_skip.weight'].shape[1])} "
                           f"differs from res3_conv1.weight input width {in_channels}")
    mlp_ratio = int(sd["res3_conv2.weight"].shape[0]) / head_channels
    fc3_out = int(sd["fc3.weight"].shape[0])
    if fc3_out not in (3, 4):
        raise MapFileError(f"{source}: fc3.weight has {fc3_out} outputs, expected 3 or 4")
    blocks = [int(m.group(1)) for m in map(_BLOCK_KEY.match, sd) if m]
    num_clusters = 1
    if "centers" in sd:
        centers = sd["centers"]
        if centers.ndim != 5 or centers.shape[0] != 1 or centers.shape[2] != 3:
            raise MapFileError(f"{source}: centers has shape {tuple(centers.shape)}, expected (1, K, 3, 1, 1)")
        num_clusters = int(centers.shape[1])
    global_channels = None
    if metadata and isinstance(metadata.get("head"), Mapping):
        global_channels = metadata["head"].get("global_channels")
    try:
        g, c = split_input_channels(in_channels, global_channels)
    except ValueError as exc:
        raise MapFileError(f"{source}: {exc}") from exc
    return HeadConfig(local_channels=c, global_channels=g, head_channels=head_channels,
                      mlp_ratio=mlp_ratio, num_head_blocks=len(blocks), use_homogeneous=fc3_out == 4,
                      num_decoder_clusters=num_clusters)


def load_state_dict_strict(module: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """``module.load_state_dict(state_dict, strict=True)`` after a check that names every problem.

    Raises MapFileError listing missing keys, unexpected keys and shape mismatches (expected vs file).
    """
    expected = module.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    shapes = [f"{k}: file {tuple(state_dict[k].shape)} vs expected {tuple(v.shape)}"
              for k, v in expected.items() if k in state_dict and state_dict[k].shape != v.shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys {missing}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected}")
        if shapes:
            parts.append(f"shape mismatches [{'; '.join(shapes)}]")
        raise MapFileError(f"{source} does not match {type(module).__name__}: " + ", ".join(parts))
    module.load_state_dict(state_dict, strict=True)


def head_state_dict_fp16(head: GlaceHead) -> "OrderedDict[str, torch.Tensor]":
    """The official head layout: ``head.state_dict()`` order, every tensor (buffers included) ``.half()`` on CPU."""
    return OrderedDict((k, v.detach().to("cpu", torch.float16).clone()) for k, v in head.state_dict().items())


def encoder_metadata(encoder: nn.Module, encoder_path: str | os.PathLike | None = None) -> dict[str, Any]:
    """Sidecar ``encoder`` entry: name, out_channels, the sha256 of its weights file when known, and
    ``pad_multiple`` for an encoder that pads its input (XFeat)."""
    info: dict[str, Any] = {"name": getattr(encoder, "name", type(encoder).__name__),
                            "out_channels": int(encoder.out_channels)}
    sha = file_sha256(encoder_path) if encoder_path is not None else getattr(encoder, "sha256", None)
    if sha:
        info["sha256"] = sha
    path = encoder_path if encoder_path is not None else getattr(encoder, "source_path", None)
    if path is not None:
        info["path"] = str(path)
    if getattr(encoder, "pad_multiple", None):  # XFeat: how its input was padded (xfeat_encoder)
        info["pad_multiple"] = int(encoder.pad_multiple)
    return info


def _json_default(obj: Any) -> Any:
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, (np.generic,)):
        return obj.item()
    if isinstance(obj, (np.ndarray, torch.Tensor)):
        return obj.tolist()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    raise TypeError(f"map metadata value of type {type(obj).__name__} is not JSON-serialisable: {obj!r}")


def save_head(head: nn.Module, path: str | os.PathLike, metadata: Mapping[str, Any] | None = None) -> Path:
    """Write a map, ``head`` (a GlaceHead, or a HeadEnsemble), and its sidecar, both atomically.

    A GlaceHead (or an ensemble of one head) is written in the official layout (all fp16, spec key
    order); a larger ensemble in the ensemble layout (``glace_core.head_ensemble``), with
    ``ensemble: {"heads": K}`` added to the sidecar. metadata: extra sidecar entries, e.g.
    ``{"encoder": encoder_metadata(enc, enc_path), "training": {...}}``; ``head``, ``head_sha256``,
    ``format`` and ``format_version`` are set here. Returns the sidecar path.
    """
    path = Path(path)
    extra = dict(metadata or {})
    if isinstance(head, HeadEnsemble) and len(head) == 1:
        extra.pop("ensemble", None)
        head = head.heads[0]
    if isinstance(head, HeadEnsemble):
        state = ensemble_state_dict(head)
        extra["ensemble"] = {**dict(extra.get("ensemble") or {}), "heads": len(head)}
    elif isinstance(head, GlaceHead):
        state = head_state_dict_fp16(head)
    else:
        raise TypeError(f"save_head expects a GlaceHead or a HeadEnsemble, got {type(head).__name__}")
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    sidecar = {**extra, "format": MAP_FORMAT, "format_version": MAP_FORMAT_VERSION,
               "head": head.config.to_dict(), "head_sha256": hashlib.sha256(data).hexdigest()}
    try:
        text = json.dumps(sidecar, indent=2, sort_keys=True, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"map metadata for {path} cannot be written as JSON: {exc}") from exc
    atomic_write_bytes(path, data)
    side = sidecar_path(path)
    atomic_write_text(side, text + "\n")
    _logger.info("saved map %s (%d bytes) and %s", path, len(data), side)
    return side


def read_map_metadata(path: str | os.PathLike, verify: bool = True) -> dict[str, Any] | None:
    """The sidecar dict of the map at ``path``, or None if there is none.

    With ``verify``, a sidecar whose ``head_sha256`` does not match the map file is stale: it is
    ignored (None, with a warning). An unreadable sidecar raises MapFileError.
    """
    side = sidecar_path(path)
    if not side.exists():
        return None
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MapFileError(f"map metadata {side} is unreadable: {exc}") from exc
    if not isinstance(data, dict):
        raise MapFileError(f"map metadata {side} holds a {type(data).__name__}, expected a JSON object")
    recorded = data.get("head_sha256")
    if verify and recorded and Path(path).exists() and file_sha256(path) != recorded:
        _logger.warning("ignoring stale map metadata %s: it was written for a different %s", side, path)
        return None
    return data


def _training_record(head_or_metadata: Any) -> Mapping[str, Any]:
    """The sidecar's ``training`` entry (a sidecar dict, or ``head.metadata`` set by load_head); {} without one."""
    metadata = head_or_metadata if isinstance(head_or_metadata, Mapping) else \
        getattr(head_or_metadata, "metadata", None)
    return (metadata or {}).get("training") or {}


def training_resolution(head_or_metadata: Any) -> int | None:
    """The ``image_resolution`` a map was trained at, from its sidecar (a dict, or ``head.metadata``
    set by load_head); None when the sidecar does not record it (e.g. an official GLACE head)."""
    value = (_training_record(head_or_metadata).get("config") or {}).get("image_resolution")
    return int(value) if value is not None else None


def training_focal(head_or_metadata: Any) -> float | None:
    """The median focal length (px) of a map's mapping frames at its training resolution, from its
    sidecar (``training.network_focal_px``, written by glace-train since 2026-12-04); None when the
    sidecar does not record it (an official GLACE head, or an older map)."""
    value = _training_record(head_or_metadata).get("network_focal_px")
    return float(value) if value else None


def mapping_poses(head_or_metadata: Any) -> np.ndarray | None:
    """(N, 3, 4) camera-to-world poses of a map's mapping frames, from its sidecar
    (``training.mapping_poses``: N rows of 12 numbers, row-major 3x4, written by glace-train since
    2026-12-04); None when the sidecar does not record them or they are malformed (logged)."""
    value = _training_record(head_or_metadata).get("mapping_poses")
    if not value:
        return None
    try:
        poses = np.asarray(value, dtype=np.float64).reshape(-1, 3, 4)
    except (TypeError, ValueError) as exc:
        _logger.warning("ignoring the map's mapping_poses: %s", exc)
        return None
    if not np.all(np.isfinite(poses)):
        _logger.warning("ignoring the map's mapping_poses: non-finite entries")
        return None
    return poses


def check_encoder_compatibility(head_or_metadata: nn.Module | Mapping[str, Any], encoder: nn.Module) -> None:
    """Raise EncoderMismatchError if the map cannot be used with ``encoder``.

    Always checks the head's local input width against ``encoder.out_channels``; when the sidecar
    (a dict, or ``head.metadata`` set by load_head) records an encoder name or sha256 and the
    encoder has one too, they must match.
    """
    if isinstance(head_or_metadata, nn.Module) and hasattr(head_or_metadata, "local_channels"):
        local = head_or_metadata.local_channels
        metadata = getattr(head_or_metadata, "metadata", None) or {}
        what = f"map {getattr(head_or_metadata, 'source_path', None) or '(in memory)'}"
    elif isinstance(head_or_metadata, Mapping):
        metadata = head_or_metadata
        head_info = metadata.get("head") or {}
        local = head_info.get("local_channels")
        what = "map"
    else:
        raise TypeError(f"expected a GlaceHead, a HeadEnsemble or a metadata dict, got {type(head_or_metadata).__name__}")
    enc_name = getattr(encoder, "name", type(encoder).__name__)
    width = getattr(encoder, "out_channels", None)
    if width is None:
        raise TypeError(f"encoder {enc_name!r} has no out_channels attribute")
    if local is not None and int(local) != int(width):
        raise EncoderMismatchError(f"{what} needs an encoder with {local} output channels, but encoder "
                                   f"{enc_name!r} gives {width}")
    recorded = metadata.get("encoder") if isinstance(metadata, Mapping) else None
    if not isinstance(recorded, Mapping):
        return
    if recorded.get("name") and recorded["name"] != enc_name:
        raise EncoderMismatchError(f"{what} was trained with encoder {recorded['name']!r}, "
                                   f"not {enc_name!r}")
    enc_sha = getattr(encoder, "sha256", None)
    if recorded.get("sha256") and enc_sha and recorded["sha256"] != enc_sha:
        raise EncoderMismatchError(f"{what} was trained with the encoder file of sha256 {recorded['sha256']} "
                                   f"({recorded.get('path', 'path unknown')}), but the loaded encoder "
                                   f"{getattr(encoder, 'source_path', '')} has sha256 {enc_sha}")
    if recorded.get("sha256") and not enc_sha:
        _logger.warning("%s records encoder sha256 %s; the encoder in use has no known file hash",
                        what, recorded["sha256"])
    enc_id = getattr(encoder, "encoder_id", None)
    if recorded.get("id") and enc_id and recorded["id"] != enc_id:
        raise EncoderMismatchError(f"{what} was trained with encoder {recorded['id']!r}, but the encoder in "
                                   f"use is {enc_id!r}")


def head_from_state_dict(state_dict: Mapping[str, torch.Tensor], metadata: Mapping[str, Any] | None = None,
                         source: str = "state dict", global_channels: int | None = None) -> GlaceHead:
    """Build a float32 GlaceHead from a head state dict (any supported prefix) and load it strictly."""
    config = infer_head_config(state_dict, metadata, source)
    if global_channels is not None:
        try:
            g, c = split_input_channels(config.in_channels, global_channels)
        except ValueError as exc:
            raise MapFileError(f"{source}: {exc}") from exc
        config = HeadConfig(**{**config.kwargs(), "global_channels": g, "local_channels": c})
    if block_width(config.head_channels, config.mlp_ratio) < 1:
        raise MapFileError(f"{source}: res3_conv2 has no outputs")
    head = GlaceHead(**config.kwargs())
    sd = select_part(state_dict, "heads", source)
    load_state_dict_strict(head, OrderedDict((k, v.float()) for k, v in sd.items()), source)
    return head


# --------------------------------------------------------------------------- ensemble layout

def ensemble_state_dict(ensemble: HeadEnsemble) -> "OrderedDict[str, torch.Tensor]":
    """The ensemble file content: ``{k}.<head key>`` per head, then the routing index, all fp16 on CPU."""
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for k, head in enumerate(ensemble.heads):
        for key, value in head_state_dict_fp16(head).items():
            out[f"{k}.{key}"] = value
    out[ROUTING_PREFIX + "descriptors"] = ensemble.descriptors.detach().to("cpu", torch.float16).clone()
    out[ROUTING_PREFIX + "membership"] = ensemble.membership.detach().to("cpu", torch.float16).clone()
    return out


def is_ensemble_state_dict(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """True if ``state_dict`` has the ensemble layout (``<k>.`` head prefixes or routing tensors)."""
    return any(k.startswith(ROUTING_PREFIX) or _HEAD_PREFIX.match(k) for k in state_dict)


def split_ensemble_state_dict(state_dict: Mapping[str, torch.Tensor], source: str = "state dict"
                              ) -> tuple[list["OrderedDict[str, torch.Tensor]"], torch.Tensor, torch.Tensor]:
    """(per-head state dicts in head order, descriptors (N, D), membership (K, N)) of an ensemble file.

    Raises MapFileError for a missing routing tensor, stray keys or non-consecutive head numbers."""
    heads: dict[int, OrderedDict[str, torch.Tensor]] = {}
    routing: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if key.startswith(ROUTING_PREFIX):
            routing[key[len(ROUTING_PREFIX):]] = value
            continue
        match = _HEAD_PREFIX.match(key)
        if not match:
            raise MapFileError(f"{source}: ensemble map has a key {key!r} that is neither '<k>.<head key>' "
                               f"nor '{ROUTING_PREFIX}*'")
        heads.setdefault(int(match.group(1)), OrderedDict())[match.group(2)] = value
    missing = [name for name in ("descriptors", "membership") if name not in routing]
    if missing:
        raise MapFileError(f"{source}: ensemble map lacks {[ROUTING_PREFIX + m for m in missing]}")
    if sorted(heads) != list(range(len(heads))) or not heads:
        raise MapFileError(f"{source}: ensemble heads must be numbered 0..K-1, got {sorted(heads)}")
    return [heads[k] for k in range(len(heads))], routing["descriptors"], routing["membership"]
