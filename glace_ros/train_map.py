"""``glace-train`` / ``train_map`` console entry point: map training from a DSAC*-layout scene
(``glace_core.cli.train``) or, with ``--bag``, straight from a rosbag2 (``glace_ros.bag_dataset``)."""
from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Run ``glace-train`` with ``argv`` (default: the command line); returns the exit code."""
    from glace_core.cli.train import main as train_main
    from glace_ros.bag_dataset import train_main_with_bag

    return train_main_with_bag(argv, train_main)


if __name__ == "__main__":
    sys.exit(main())
