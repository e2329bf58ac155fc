"""Scene coordinates of one image against a map, a single head or an ensemble, for the localisers.

``MapPredictor(encoder, model)`` is what ``glace-eval`` and the relocalizer pipeline call per
image. It returns one or more *candidates*, ``(head index, scene coordinates (1, 3, h, w))``; the
caller runs RANSAC on each and keeps the pose with the most inliers (ACE's rule for ensembles).

- A GlaceHead gives one candidate. On CPU with ``fast`` it runs ``FastRegressor`` (encoder and head
  in one frozen graph), else the plain modules (fp16 autocast on CUDA).
- A HeadEnsemble runs the encoder once, ranks its clusters with ``HeadEnsemble.route`` and runs
  the first ``candidates`` heads (all when ``candidates`` is 0). On CPU with ``fast`` the encoder and
  each head are frozen separately (``FastModule``).
- ``precision`` ("fp32" or "bf16", already resolved: ``glace_core.cpu_features.resolve_precision``)
  is the fast path's (``FastInferenceConfig.precision``); the plain modules always run float32 on
  CPU and fp16 autocast on CUDA.

Timings (seconds) of the last call are in ``timings``: ``network`` for the fused single-head path,
else ``encoder`` and ``head`` (routing and the candidate heads that ran). ``iterate`` yields the
candidates one at a time, each head run when its candidate is asked for.
"""
from __future__ import annotations

import contextlib
import time
from typing import Iterator

import torch
from torch import nn

from glace_core.head_ensemble import HeadEnsemble

#: Heads an ensemble tries per image by default (the best-routed three; with the localizer's early
#: accept the second and third run only when the first is weak). Three against two, seven bench
#: scenes (BENCHMARKS.md "Early accept"): the same on the textured rooms, 13 against 11 of 50
#: frames within 5 cm/5 deg and 45 against 40 within 10 cm/10 deg with another camera.
DEFAULT_CANDIDATES = 3


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class MapPredictor:
    """``predictor(image (1, 1, H, W), global (1, G) or None) -> [(head index, (1, 3, h, w) float32), ...]``.

    Not thread-safe (like a module); the fast path snapshots the weights at construction.
    """

    def __init__(self, encoder: nn.Module, model: nn.Module, *, fast: bool = True,
                 candidates: int = DEFAULT_CANDIDATES, precision: str = "fp32"):
        from glace_core.fast_inference import FastInferenceConfig

        if int(candidates) < 0:
            raise ValueError(f"candidates must be >= 0 (0: every head of an ensemble), got {candidates}")
        self.encoder, self.model = encoder, model
        self.device = next(model.parameters()).device
        self.ensemble = isinstance(model, HeadEnsemble)
        self.candidates = int(candidates)
        self.fast = bool(fast) and self.device.type == "cpu"
        self.precision = precision if self.fast else "fp32"
        self._config = FastInferenceConfig(precision=self.precision)
        self.timings: dict[str, float] = {}
        #: the encoder's features (1, C, h, w) of the last call, for the keyframe refinement; None after
        #: the fused single-head path, which does not expose them
        self.features: torch.Tensor | None = None
        self._fast_single = self._fast_encoder = None
        self._fast_heads: dict[int, object] = {}
        if self.fast and not self.ensemble:
            from glace_core.fast_inference import FastRegressor

            self._fast_single = FastRegressor(encoder, model, self._config)
        elif self.fast:
            from glace_core.fast_inference import FastModule

            self._fast_encoder = FastModule(encoder, self._config)

    @property
    def built_heads(self) -> list[int]:
        """Heads of an ensemble whose fast-path graph exists (built on first use, or by warming up)."""
        return sorted(self._fast_heads)

    @property
    def num_heads(self) -> int:
        return len(self.model) if self.ensemble else 1

    def _head(self, k: int):
        if not self.fast:
            return lambda f, g: self.model(f, g, cluster=k)
        if k not in self._fast_heads:
            from glace_core.fast_inference import FastModule, FoldedHead

            self._fast_heads[k] = FastModule(FoldedHead(self.model.heads[k]), self._config)
        fast = self._fast_heads[k]
        return lambda f, g: fast(f) if g is None else fast(f, g)

    def _inference(self) -> contextlib.ExitStack:
        """No autograd, and fp16 autocast on CUDA (the plain modules' precision there)."""
        stack = contextlib.ExitStack()
        stack.enter_context(torch.inference_mode())
        stack.enter_context(torch.autocast(self.device.type, dtype=torch.float16, enabled=self.device.type == "cuda"))
        return stack

    def __call__(self, image: torch.Tensor, global_features: torch.Tensor | None = None
                 ) -> list[tuple[int, torch.Tensor]]:
        return list(self.iterate(image, global_features))

    def iterate(self, image: torch.Tensor, global_features: torch.Tensor | None = None
                ) -> Iterator[tuple[int, torch.Tensor]]:
        """The candidates one at a time, best-routed first: a head runs only when its candidate is
        asked for, so a caller that stops early (``Localizer``'s ``early_accept_ratio``) saves the
        other heads. ``timings`` counts what ran so far."""
        image = image.to(self.device)
        gvec = global_features if int(getattr(self.model, "global_channels", 0)) else None
        t0 = time.perf_counter()
        self.features = None
        if self._fast_single is not None:
            sc = self._fast_single(image, gvec)
            self.timings = {"network": time.perf_counter() - t0}
            yield 0, sc.float()
            return
        with self._inference():
            feats = self._fast_encoder(image) if self._fast_encoder is not None else self.encoder(image)
            _sync(self.device)
            self.features = feats
            t1 = time.perf_counter()
            order = self.model.route(feats, self.candidates or None) if self.ensemble else [0]
        self.timings = {"encoder": t1 - t0, "head": time.perf_counter() - t1}  # routing counts as head time
        for k in order:
            t2 = time.perf_counter()
            with self._inference():
                sc = (self._head(k)(feats, gvec) if self.ensemble else self.model(feats, gvec)).float()
                _sync(self.device)
            self.timings["head"] += time.perf_counter() - t2
            yield k, sc
