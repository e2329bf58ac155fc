"""glace_core: GLACE scene coordinate regression in PyTorch and numpy (no ROS imports)."""
__version__ = "0.1.0"
