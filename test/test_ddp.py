"""glace-train under torchrun (2 processes, gloo): one valid map, written once, by rank 0."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from training_fixtures import small_scene


def test_torchrun_two_ranks_write_one_loadable_map(tmp_path):
    from glace_core.network import load_head

    scene = small_scene(tmp_path / "scene", seed=4, n_train=8, n_test=2, height=48, width=64)
    out = tmp_path / "out"
    out.mkdir()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "glace_core.cli.train", str(scene), str(out / "map.pt"), "--preset", "cpu", "--encoder_path",
           "xfeat", "--image_resolution", "48", "--max_iterations", "6", "--batch_size", "512",
           "--training_buffer_size", "2048", "--head_channels", "32", "--device", "cpu", "--no-progress",
           "--use_aug", "True"]  # augmentation on: the buffer path the cpu preset skips
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["map.pt", "map.pt.json", "map.pt.keyframes.npz"]  # rank 0 alone
    head = load_head(out / "map.pt")
    assert head.head_channels == 32 and head.local_channels == 64 and head.global_channels == 0
    sidecar = json.loads((out / "map.pt.json").read_text())
    assert sidecar["training"]["world_size"] == 2 and sidecar["encoder"]["name"] == "xfeat"
    assert "rank 0: buffer" in proc.stderr and "rank 1: buffer" in proc.stderr  # both ranks trained
    assert proc.stdout.count("wrote ") == 1
