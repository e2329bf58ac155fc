"""Link the ROS share files of this source tree into a prefix (the venv).

`pip install -e .` skips data_files, so ament_index and get_package_share_directory would not
find glace_ros. This mirrors the data_files of setup.py with symlinks, so edits show at once.
Usage: python scripts/install_share.py PREFIX
"""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "glace_ros"


def link(src: str, dst: str) -> None:
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    if os.path.islink(dst) or os.path.isfile(dst):
        os.remove(dst)
    os.symlink(src, dst)


def main(prefix: str) -> None:
    share = os.path.join(prefix, "share")
    link(os.path.join(ROOT, "resource", PACKAGE),
         os.path.join(share, "ament_index", "resource_index", "packages", PACKAGE))
    link(os.path.join(ROOT, "package.xml"), os.path.join(share, PACKAGE, "package.xml"))
    for folder in ("launch", "config"):
        link(os.path.join(ROOT, folder), os.path.join(share, PACKAGE, folder))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else sys.prefix)
