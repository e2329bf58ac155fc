"""Inference-optimised encoder + head for CPU: same scene coordinates as the plain modules, less time.

``FastRegressor(encoder, head)`` computes exactly what ``head(encoder(image), global_features)``
computes (within float32 round-off, <= 1e-4 relative) with these changes, each measured on the
2-core AVX-512 machine (BENCHMARKS.md "Inference (CPU)"):

- **channels-last** (NHWC) weights and activations: oneDNN's direct convolutions run without the
  NCHW <-> blocked reorders around every layer (encoder ~0.8x of plain NCHW).
- **Global input folded into a bias**: the global descriptor ``g`` (N, G) is the same for every
  cell, so ``res3_conv1([g | f]) = W_f f + (W_g g + b)``; the G = 256 global input channels of the
  first head layer (and of ``head_skip`` when it is a convolution) are computed once per image
  instead of once per cell. The identity skip still adds ``[g | f]``.
- **Frozen oneDNN graph**: the whole encoder + head is traced once per input shape,
  ``torch.jit.freeze`` folds the weights into constants and ``optimize_for_inference`` fuses
  conv + ReLU and keeps activations in oneDNN's blocked layout between layers. Whether that last
  step pays depends on the module and the CPU (slower for the XFeat encoder on AVX2 cores, faster
  for the heads), so by default (``optimize="auto"``) both graphs are built and timed and the
  faster is kept (:func:`freeze_for_inference`). The two compute the same scene coordinates to
  about 1e-5 relative, not bitwise: a run may pick another graph than the last one. Set
  ``GLACE_GRAPH_OPTIMIZE=on`` (or ``off``) for bitwise the same results from run to run. The traced graph is
  cached per (image shape, global shape); a trace that fails falls back to the eager channels-last
  path (logged once).

- **bf16** (``FastInferenceConfig.precision="bf16"``, chosen by ``glace_core.cpu_features`` on
  CPUs with AVX512_BF16 or AMX): :func:`to_bfloat16` makes every convolution and linear layer compute
  in bfloat16 (weights converted once, the input cast by a forward pre-hook that the trace records;
  batch norm after a convolution is folded into it in float32 first) except the heads' output layers
  (:data:`FP32_LAYERS`: ``fc3``, ``fcc``) and the layers a module lists in ``bf16_fp32_layers`` (the
  XFeat encoder: its first blocks and output layer), which cast their input back to float32; buffers
  (the mean, the decoder centres) and normalisation layers stay float32. Measured in issue 17 on an AVX512_BF16
  CPU (ACE encoder + paper head): the median cell moves 0.41 cm with every layer in bf16, 0.13 cm
  with fc3 in fp32. On the tiny XFeat test map (emulated bf16 on AVX2) the cells move ~0.5 % of their
  depth, mostly from the encoder (median 3.0 cm with only the encoder in bf16, 0.6 cm with only the
  heads). On the demo map on a Zen 5 CPU (AVX512_BF16), the median pose moves 0.38 cm / 0.11 deg
  from fp32 with the whole XFeat encoder in bf16, 0.19 cm / 0.07 deg with its first blocks and output
  layer in fp32 (encoder about 1 ms slower). Autocast cannot keep fc3 in fp32 inside a traced graph
  (a region with autocast disabled is ignored by ``torch.jit.trace``), hence the casts by hand. Not
  within 1e-4 of fp32: the poses are checked against fp32 instead (test/test_precision.py).

Kept out on purpose: the 1x1 head as ``torch.addmm`` on (HW, C) rows (MKL's sgemm reaches about
half of oneDNN's convolution throughput on this AMD CPU: measured slower), ``torch.compile``
(not measured: the frozen graph already runs the convolutions at oneDNN's rate). The candidate heads
of an ensemble as one batched call (``torch.baddbmm`` over stacked weights, or one grouped
convolution per pair of heads, frozen): 1.6-2.0x and 1.1-1.2x the time of the per-head frozen graphs
at 30x40 to 60x80 cells (2 shared AVX2 cores, load 4-5), so the heads run one by one. On CUDA the wrapper runs the plain
modules (the caller's autocast applies).

``FastModule`` applies the same (channels-last copy, frozen graph per input shape) to one module:
ensemble maps (``glace_core.map_predictor``) run the encoder once and then only the routed heads,
so encoder and heads are frozen separately there.
"""
from __future__ import annotations

import logging
import os
import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

_logger = logging.getLogger(__name__)

__all__ = ["FP32_LAYERS", "BF16_FP32_ATTRIBUTE", "FastInferenceConfig", "FoldedHead", "FastModule", "FastRegressor",
           "freeze_for_inference", "to_bfloat16"]

#: Layers (attribute names) kept in float32 under bf16: the heads' output projections.
FP32_LAYERS = ("fc3", "fcc")
#: A module attribute: names (prefixes, relative to that module) of its layers kept in float32 under bf16.
BF16_FP32_ATTRIBUTE = "bf16_fp32_layers"
#: What ``FastInferenceConfig.precision`` accepts (``glace_core.cpu_features.resolve_precision`` gives it).
GRAPH_PRECISIONS = ("fp32", "bf16")
#: ``FastInferenceConfig.optimize``: oneDNN's optimize_for_inference always, never, or whichever is faster
GRAPH_OPTIMIZE = ("auto", "on", "off")
#: timed calls of each graph when ``optimize`` is "auto"
GRAPH_TRIALS = 5
#: environment variable giving ``FastInferenceConfig.optimize``'s default ("on" or "off" for scene
#: coordinates that are bitwise the same from run to run; "auto" may pick another graph next run)
OPTIMIZE_ENV_VAR = "GLACE_GRAPH_OPTIMIZE"


def freeze_for_inference(module: nn.Module, args: tuple[torch.Tensor, ...], optimize: str = "on"
                         ) -> torch.jit.ScriptModule:
    """``module`` traced on ``args`` and frozen; valid for these shapes only.

    optimize: "on" adds oneDNN's ``optimize_for_inference``, "off" leaves it out, "auto" builds both
    and keeps the faster (:data:`GRAPH_TRIALS` calls each, in turn). Measured on 2 AVX2 EPYC cores
    (2026-12-03): it made the XFeat encoder 1.1x slower (33.8 against 30-31 ms at 480x640) and a
    128-channel head 0.92x faster (14.1-14.6 against 15.3-15.9 ms), so neither fixed choice suits
    every module and CPU. Runs the graph at least once (building the oneDNN primitives). Raises
    whatever tracing raises.
    """
    if optimize not in GRAPH_OPTIMIZE:
        raise ValueError(f"optimize must be one of {GRAPH_OPTIMIZE}, got {optimize!r}")
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(module.eval(), args, check_trace=False).eval()
        graphs = {}  # torch.jit.freeze copies: one trace serves both graphs
        if optimize in ("on", "auto"):  # timed first, then "off", in turn
            graphs["on"] = torch.jit.optimize_for_inference(torch.jit.freeze(traced))
        if optimize in ("off", "auto"):
            graphs["off"] = torch.jit.freeze(traced)
        for graph in graphs.values():
            graph(*args)
        if len(graphs) == 1:
            return next(iter(graphs.values()))
        times: dict[str, list[float]] = {name: [] for name in graphs}
        for _ in range(GRAPH_TRIALS):
            for name, graph in graphs.items():
                t0 = time.perf_counter()
                graph(*args)
                times[name].append(time.perf_counter() - t0)
    medians = {name: sorted(v)[len(v) // 2] for name, v in times.items()}
    best = min(medians, key=medians.get)
    _logger.debug("fast inference: optimize_for_inference %s for %s %s (median ms: %s)", best, type(module).__name__,
                  [tuple(a.shape) for a in args], {k: round(1e3 * v, 1) for k, v in medians.items()})
    return graphs[best]


@dataclass(frozen=True)
class FastInferenceConfig:
    """Which optimisations FastRegressor applies (all on by default; each can be switched off to measure it)."""

    channels_last: bool = True  # NHWC weights and activations
    fold_global: bool = True  # the global descriptor's share of the first head layer as a per-image bias
    freeze: bool = True  # torch.jit trace + freeze (+ optimize_for_inference, see ``optimize``), cached per input shape
    #: optimize_for_inference: "on", "off", or "auto" (both timed at build, the faster kept); default:
    #: the environment variable GLACE_GRAPH_OPTIMIZE, else "auto"
    optimize: str = field(default_factory=lambda: os.environ.get(OPTIMIZE_ENV_VAR, "") or "auto")
    max_cached_shapes: int = 4  # traced graphs kept (one per image size)
    num_threads: int = 0  # >0: torch.set_num_threads at construction; 0: leave torch's setting
    precision: str = "fp32"  # "bf16": to_bfloat16 (convolutions in bf16, FP32_LAYERS in fp32)

    def __post_init__(self):
        if self.precision not in GRAPH_PRECISIONS:
            raise ValueError(f"precision must be one of {GRAPH_PRECISIONS}, got {self.precision!r}")
        if self.optimize not in GRAPH_OPTIMIZE:
            raise ValueError(f"optimize must be one of {GRAPH_OPTIMIZE}, got {self.optimize!r} (from "
                             f"FastInferenceConfig or the environment variable {OPTIMIZE_ENV_VAR})")


def _conv_parts(conv: nn.Conv2d, split: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A 1x1 conv over ``[g (split) | f]`` as (W_g (out, split), W_f (out, in-split, 1, 1), bias (out,))."""
    w = conv.weight.detach().float()
    b = conv.bias.detach().float() if conv.bias is not None else torch.zeros(w.shape[0], device=w.device)
    return w[:, :split, 0, 0].clone(), w[:, split:].clone(), b.clone()


class FoldedHead(nn.Module):
    """A GlaceHead rewritten for inference: ``forward(features (N, C, h, w), global (N, G) or None)``
    -> scene coordinates ``(N, 3, h, w)`` float32.

    The first layer (and a convolutional ``head_skip``) only sees the C local channels; the G global
    channels enter as a per-image bias ``W_g g``. Identical to ``GlaceHead.forward`` up to float
    round-off. Heads without global input keep their layers unchanged.
    """

    def __init__(self, head: nn.Module):
        super().__init__()
        self.global_channels = int(head.global_channels)
        self.local_channels = int(head.local_channels)
        self.use_homogeneous = bool(head.use_homogeneous)
        self.num_decoder_clusters = int(head.num_decoder_clusters)
        self.identity_skip = isinstance(head.head_skip, nn.Identity)
        g = self.global_channels
        w_g, w_f, b = _conv_parts(head.res3_conv1, g)
        self.first = nn.Conv2d(self.local_channels, w_f.shape[0], 1)
        self.first.weight.data.copy_(w_f)
        self.first.bias.data.copy_(b if g == 0 else torch.zeros_like(b))
        self.register_buffer("first_global_weight", w_g)  # (h, G)
        self.register_buffer("first_global_bias", b)
        if not self.identity_skip:
            s_g, s_f, s_b = _conv_parts(head.head_skip, g)
            self.skip = nn.Conv2d(self.local_channels, s_f.shape[0], 1)
            self.skip.weight.data.copy_(s_f)
            self.skip.bias.data.copy_(s_b if g == 0 else torch.zeros_like(s_b))
            self.register_buffer("skip_global_weight", s_g)
            self.register_buffer("skip_global_bias", s_b)
        self.head = head  # the layers after the first: GlaceHead.decode

    def forward(self, features: torch.Tensor, global_features: torch.Tensor | None = None) -> torch.Tensor:
        """features ``(N, C, h, w)`` float32; global_features ``(N, G)`` (None without global input)."""
        if self.global_channels:
            n = features.shape[0]
            gvec = global_features.to(self.first_global_weight.dtype)  # the folded biases are float32
            first_bias = F.linear(gvec, self.first_global_weight, self.first_global_bias)[:, :, None, None]
            y = F.relu(self.first(features) + first_bias)
            if self.identity_skip:
                shape = (n, self.global_channels, features.shape[2], features.shape[3])
                skip = torch.cat((gvec.to(features.dtype)[:, :, None, None].expand(shape), features), dim=1)
            else:
                skip_bias = F.linear(gvec, self.skip_global_weight, self.skip_global_bias)[:, :, None, None]
                skip = self.skip(features) + skip_bias
        else:
            y = F.relu(self.first(features))
            skip = features if self.identity_skip else self.skip(features)
        return self.head.decode(y, skip).contiguous()


class _EncoderHead(nn.Module):
    def __init__(self, encoder: nn.Module, head: nn.Module):
        super().__init__()
        self.encoder, self.head = encoder, head

    def forward(self, image: torch.Tensor, global_features: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.encoder(image), global_features)


class _GraphCache:
    """Frozen graphs of one module, one per input shape (LRU, ``max_size``); None once tracing failed."""

    def __init__(self, module: nn.Module, max_size: int, optimize: str):
        self.module, self.max_size, self.optimize = module, max(int(max_size), 1), optimize
        self.graphs: OrderedDict[tuple, torch.jit.ScriptModule] = OrderedDict()
        self.failed = False

    def get(self, args: tuple[torch.Tensor, ...]):
        key = tuple(tuple(a.shape) for a in args)
        graph = self.graphs.get(key)
        if graph is not None:
            self.graphs.move_to_end(key)
            return graph
        try:
            graph = freeze_for_inference(self.module, args, self.optimize)
        except Exception as exc:  # noqa: BLE001 - any tracing failure falls back to eager
            _logger.warning("fast inference: tracing failed (%s); using the eager channels-last path", exc)
            self.failed = True
            return None
        self.graphs[key] = graph
        while len(self.graphs) > self.max_size:
            self.graphs.popitem(last=False)
        return graph


def _cast_input(dtype: torch.dtype):
    """A forward pre-hook casting the floating-point inputs of a layer to ``dtype``."""
    def hook(module: nn.Module, args: tuple) -> tuple:
        return tuple(a.to(dtype) if torch.is_tensor(a) and a.is_floating_point() else a for a in args)

    return hook


def _fold_batch_norms(module: nn.Module) -> None:
    """In place: every eval BatchNorm2d right after a Conv2d in an nn.Sequential folded into the conv."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for seq in [m for m in module.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            conv, bn = seq[i], seq[i + 1]
            if (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.track_running_stats
                    and not bn.training and not conv.training):
                seq[i], seq[i + 1] = fuse_conv_bn_eval(conv, bn), nn.Identity()


def to_bfloat16(module: nn.Module, keep_float: tuple[str, ...] = FP32_LAYERS) -> nn.Module:
    """``module`` (float32, eval) made to compute in bfloat16, in place; returns it.

    Every Conv2d and Linear gets bf16 weights and casts its input to bf16, except those whose
    attribute name is in ``keep_float`` (float32 weights, input cast to float32). Batch norm after a
    convolution is folded into it first (in float32); buffers and other layers keep their dtype, so
    mixed arithmetic promotes to float32 (e.g. a float32 bias added to a bf16 activation) until the
    next layer casts back. The casts are forward pre-hooks, which ``torch.jit.trace`` records.

    A submodule may name more layers to keep in float32 in its attribute :data:`BF16_FP32_ATTRIBUTE`
    (qualified-name prefixes relative to it; e.g. the XFeat encoder's first blocks and output layer)."""
    _fold_batch_norms(module)
    kept = tuple(f"{owner}.{prefix}" if owner else prefix for owner, sub in module.named_modules()
                 for prefix in getattr(sub, BF16_FP32_ATTRIBUTE, ()))
    for name, layer in module.named_modules():
        if not isinstance(layer, (nn.Conv2d, nn.Linear)):
            continue
        fp32 = name.rsplit(".", 1)[-1] in keep_float or any(name == k or name.startswith(k + ".") for k in kept)
        dtype = torch.float32 if fp32 else torch.bfloat16
        layer.to(dtype)
        layer.register_forward_pre_hook(_cast_input(dtype))
    return module


def _prepare(module: nn.Module, config: FastInferenceConfig) -> nn.Module:
    """A frozen eval copy of ``module`` in ``config.precision`` (channels-last when configured)."""
    net = module.float().eval()
    for p in net.parameters():
        p.requires_grad_(False)
    if config.precision == "bf16":
        to_bfloat16(net)
    return net.to(memory_format=torch.channels_last) if config.channels_last else net


def _input(a: torch.Tensor, device: torch.device, config: FastInferenceConfig) -> torch.Tensor:
    """A graph input: on ``device``, float32 (bf16 graphs: floating inputs keep their dtype, the layers
    cast), channels-last when 4-D and configured."""
    keep = config.precision == "bf16" and a.is_floating_point()
    a = a.to(device) if keep else a.to(device, torch.float32)
    if config.channels_last and a.ndim == 4:
        return a.contiguous(memory_format=torch.channels_last)
    return a.contiguous()


class FastModule:
    """Any tensor -> tensor module on CPU through ``config``'s optimisations (a copy; the original is
    untouched): ``FastModule(encoder)(image)`` or ``FastModule(FoldedHead(head))(features, g)``.
    4-D inputs are made channels-last when configured; one frozen graph per input shapes."""

    def __init__(self, module: nn.Module, config: FastInferenceConfig = FastInferenceConfig()):
        import copy

        self.config = config
        self.device = next(iter(list(module.parameters()) + list(module.buffers()))).device
        self._net = _prepare(copy.deepcopy(module), config)
        self._cache = _GraphCache(self._net, config.max_cached_shapes, config.optimize)

    def __call__(self, *args: torch.Tensor) -> torch.Tensor:
        args = tuple(_input(a, self.device, self.config) for a in args)
        with torch.no_grad():
            graph = self._cache.get(args) if self.config.freeze and not self._cache.failed else None
            return graph(*args) if graph is not None else self._net(*args)


class FastRegressor:
    """Encoder + head for inference: ``(image (N, 1, H, W), global (N, G) or None) -> (N, 3, ceil(H/8), ceil(W/8))``.

    Builds its own copies of the modules (the originals are not modified). Thread-compatible like a
    module: use it from one thread at a time. On CUDA it calls the original modules unchanged.
    """

    def __init__(self, encoder: nn.Module, head: nn.Module, config: FastInferenceConfig = FastInferenceConfig()):
        import copy

        self.config = config
        self.encoder, self.head = encoder, head  # the originals, used on CUDA and for per-pixel globals
        self.global_channels = int(getattr(head, "global_channels", 0))
        self.device = next(head.parameters()).device
        if config.num_threads > 0:
            torch.set_num_threads(int(config.num_threads))
        self._cpu = self.device.type == "cpu"
        if not self._cpu:
            return
        fast_head = FoldedHead(head) if config.fold_global else copy.deepcopy(head)
        self._net = _prepare(_EncoderHead(copy.deepcopy(encoder), fast_head), config)
        self._cache = _GraphCache(self._net, config.max_cached_shapes, config.optimize)

    @property
    def _traced(self) -> "OrderedDict[tuple, torch.jit.ScriptModule]":
        return self._cache.graphs

    @property
    def _trace_failed(self) -> bool:
        return self._cache.failed

    def _check(self, image: torch.Tensor, global_features: torch.Tensor | None) -> None:
        if image.ndim != 4 or image.shape[1] != 1 or not image.is_floating_point():
            raise ValueError(f"image must be a float (N, 1, H, W) tensor, got {tuple(image.shape)} {image.dtype}")
        if self.global_channels:
            if global_features is None:
                raise ValueError(f"this head needs global features (N, {self.global_channels}); got None")
            if global_features.ndim == 2 and tuple(global_features.shape) != (image.shape[0], self.global_channels):
                raise ValueError(f"global features must have shape ({image.shape[0]}, {self.global_channels}), "
                                 f"got {tuple(global_features.shape)}")

    def __call__(self, image: torch.Tensor, global_features: torch.Tensor | None = None) -> torch.Tensor:
        """Scene coordinates ``(N, 3, h, w)`` float32; see the class docstring for the shapes."""
        self._check(image, global_features)
        gvec = global_features if self.global_channels else None
        if not self._cpu or (gvec is not None and gvec.ndim != 2):
            with torch.inference_mode():  # CUDA, or per-pixel global features: the plain modules
                return self.head(self.encoder(image), gvec)
        image = _input(image.float(), self.device, self.config)
        if gvec is not None:
            gvec = gvec.to(self.device, torch.float32).contiguous()
        args = (image,) if gvec is None else (image, gvec)
        with torch.no_grad():
            graph = self._cache.get(args) if self.config.freeze and not self._cache.failed else None
            return graph(*args) if graph is not None else self._net(*args)
