"""``glace-extract-features SCENE``: write the global features (features.npy) of every split of a scene.

Each split folder (train, test) gets ``features.npy``, float32 (N, 256), row i for the i-th image in
sorted order of ``rgb/*`` (jpg and png), written atomically.

- ``--global-features r2former`` (default): R2Former descriptors (L2-normalised rows) from the
  official checkpoint given with ``--checkpoint`` (``CVPR23_DeitS_Rerank.pth``); it is never
  downloaded and never replaced by random weights.
- ``--global-features none``: all-zero rows, for training a GLACE-layout head without a checkpoint.
  The head then learns no global conditioning: in training it only sees the Gaussian noise added to
  the (renormalised) features, and at test time the same zeros. ``glace-train --global_feat False``
  is the cheaper way to the same end.
"""
from __future__ import annotations

import argparse
import io
import logging
import sys
from pathlib import Path

import numpy as np

_logger = logging.getLogger(__name__)
DESCRIPTOR_DIM = 256
SPLITS = ("train", "test")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="glace-extract-features", description=__doc__,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("scene", type=Path, help="DSAC*-layout scene folder")
    parser.add_argument("--checkpoint", type=Path, default=None, help="R2Former checkpoint (CVPR23_DeitS_Rerank.pth)")
    parser.add_argument("--global-features", dest="global_features", choices=("r2former", "none"), default="r2former",
                        help="r2former: descriptors from --checkpoint; none: zeros (the head learns no global "
                             "conditioning)")
    parser.add_argument("--batch_size", type=int, default=256, help="images per R2Former forward pass")
    parser.add_argument("--resolution", type=int, nargs=2, default=[480, 640], metavar=("H", "W"),
                        help="R2Former input size (multiples of 16); GLACE uses 480 640")
    parser.add_argument("--feat_name", default="features.npy", help="file name written into each split folder")
    parser.add_argument("--splits", nargs="+", default=list(SPLITS), help="split folders to process (missing ones are skipped)")
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:N or mps")
    parser.add_argument("--no-progress", action="store_true", help="disable the progress bar")
    return parser


def r2former_features(dataset, descriptor, device, batch_size: int, progress: bool = True) -> np.ndarray:
    """(N, 256) float32 descriptors of ``dataset``'s images (consecutive images of one size are batched)."""
    import torch
    from tqdm import tqdm

    out = np.zeros((len(dataset), DESCRIPTOR_DIM), dtype=np.float32)
    pending: list[tuple[int, np.ndarray]] = []

    def flush():
        if not pending:
            return
        batch = torch.from_numpy(np.stack([img for _, img in pending])).permute(0, 3, 1, 2).float().div(255)
        with torch.inference_mode():
            feats = descriptor(batch.to(device)).float().cpu().numpy()
        for (i, _), row in zip(pending, feats):
            out[i] = row
        pending.clear()

    for i in tqdm(range(len(dataset)), desc="global features", disable=not progress):
        rgb = dataset.load_rgb(i)
        if rgb.ndim == 2:
            rgb = np.repeat(rgb[:, :, None], 3, axis=2)
        if pending and (rgb.shape != pending[0][1].shape or len(pending) >= batch_size):
            flush()
        pending.append((i, rgb))
    flush()
    return out


def save_features(path: Path, features: np.ndarray) -> None:
    """``np.save`` of ``features`` (N, 256) float32 to ``path``, atomically."""
    from glace_core.io_utils import atomic_write_bytes

    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(features, dtype=np.float32))
    atomic_write_bytes(path, buffer.getvalue())


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error(f"--batch_size must be >= 1, got {args.batch_size}")
    if args.global_features == "r2former" and args.checkpoint is None:
        parser.error("--global-features r2former needs --checkpoint R2FORMER.pth (the official "
                     "CVPR23_DeitS_Rerank.pth; it is not downloaded). Without one, choose --global-features none "
                     "explicitly (zero features: the head learns no global conditioning)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from glace_core.dataset import DatasetError, SceneSplit
    from glace_core.devices import resolve_device

    try:
        if not args.scene.is_dir():
            raise FileNotFoundError(f"scene folder not found: {args.scene}")
        splits = [s for s in args.splits if (args.scene / s / "rgb").is_dir()]
        if not splits:
            raise FileNotFoundError(f"{args.scene} has none of the split folders {args.splits} (with rgb/)")
        descriptor, device = None, None
        if args.global_features == "r2former":
            from glace_core.r2former import load_r2former

            if not args.checkpoint.is_file():
                raise FileNotFoundError(f"--checkpoint {args.checkpoint}: file not found")
            device = resolve_device(args.device)
            descriptor = load_r2former(args.checkpoint, device, tuple(args.resolution))
        for split in splits:
            dataset = SceneSplit(args.scene, split)
            if descriptor is None:
                features = np.zeros((len(dataset), DESCRIPTOR_DIM), dtype=np.float32)
            else:
                features = r2former_features(dataset, descriptor, device, args.batch_size, not args.no_progress)
            path = args.scene / split / args.feat_name
            save_features(path, features)
            print(f"wrote {path} ({features.shape[0]} x {features.shape[1]}, {args.global_features})")
    except (ValueError, FileNotFoundError, DatasetError) as exc:
        print(f"glace-extract-features: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
