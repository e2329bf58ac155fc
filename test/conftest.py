"""Fixtures shared by several test modules.

``GLACE_TINY_SCENE_DIR`` (optional): a folder where the tiny scene and map are built once and reused
by later sessions (for working on the node tests); by default each session builds its own.

``GLACE_GRAPH_OPTIMIZE`` is "on" for the tests unless set: tests that compare two localizers bit for
bit must get the same graph in both, which the default "auto" (a choice by timing) does not promise.
"auto" itself is tested with explicit options (test_fast_inference.py).
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from relocalizer_scene import TinyScene, build_tiny_scene

os.environ.setdefault("GLACE_GRAPH_OPTIMIZE", "on")


@pytest.fixture(scope="module")
def context():
    """An rclpy context on this session's DDS domain (relocalizer_graph.make_context), per module."""
    import rclpy

    from relocalizer_graph import make_context

    ctx = make_context()
    yield ctx
    rclpy.shutdown(context=ctx)


@pytest.fixture(scope="session")
def tiny_scene(tmp_path_factory) -> TinyScene:
    """The tiny synthetic scene and its trained ensemble map (built once per session)."""
    work = os.environ.get("GLACE_TINY_SCENE_DIR")
    return build_tiny_scene(Path(work) if work else tmp_path_factory.mktemp("relocalizer_scene"))
