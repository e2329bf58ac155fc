"""A glace-train interrupted by SIGTERM or SIGINT during training exits non-zero and leaves no map
and no temporary file behind."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from training_fixtures import small_scene


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return small_scene(tmp_path_factory.mktemp("interrupt") / "scene", seed=6, n_train=4, n_test=1, height=48,
                       width=64)


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 128 + signal.SIGTERM), (signal.SIGINT, 128 + signal.SIGINT)])
def test_signal_during_training_leaves_no_file(scene, tmp_path, signum, code):
    out = tmp_path / "out"
    out.mkdir()
    cmd = [sys.executable, "-m", "glace_core.cli.train", str(scene), str(out / "map.pt"), "--preset", "cpu",
           "--encoder_path", "xfeat", "--image_resolution", "48", "--max_iterations", "1000000", "--batch_size", "512",
           "--training_buffer_size", "1024", "--head_channels", "32", "--device", "cpu"]
    proc = subprocess.Popen(cmd, env=dict(os.environ, OMP_NUM_THREADS="1"), stderr=subprocess.PIPE, text=True)
    try:
        seen, deadline = "", time.time() + 120
        while "training:" not in seen and time.time() < deadline and proc.poll() is None:
            seen += proc.stderr.read(1)  # tqdm's bar of the training loop
        assert "training:" in seen, seen[-2000:]
        time.sleep(0.5)
        proc.send_signal(signum)
        _, rest = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, (seen + rest)[-2000:]
    assert "no map was written" in rest
    assert list(out.iterdir()) == []  # no map, no sidecar, no temporary file
