"""glace-ros: GLACE scene coordinate regression relocalization for ROS 2 (ament_python).

Builds the `dsac_native` pybind11 extension from `dsac_native/src/*.cpp` (C++17, Eigen
from the system include path) and installs the ROS share files (ament resource marker,
package.xml, launch/ and config/) as data_files.
"""
import glob
import os
import sys

from setuptools import find_packages, setup

PACKAGE = "glace_ros"
HERE = os.path.dirname(os.path.abspath(__file__))


def _native_extensions():
    """The dsac_native extension; empty only while its sources do not exist yet."""
    sources = sorted(glob.glob(os.path.join("dsac_native", "src", "*.cpp")))
    if not sources:
        return []
    from pybind11.setup_helpers import Pybind11Extension

    # libstdc++ is linked in and hidden on Linux: an extension built by a g++ newer than the libstdc++
    # that torch loads first crashed at import (SIGSEGV in iostream code, seen with /opt/gcc on a GPU
    # machine); with its own hidden copy it no longer depends on which libstdc++ the process has.
    link_args = ["-pthread"]
    if sys.platform.startswith("linux"):
        link_args += ["-static-libstdc++", "-Wl,--exclude-libs,ALL", "-Wl,-Bsymbolic"]
    include_dirs = [os.path.join("dsac_native", "include")]
    for candidate in ("/usr/include/eigen3", "/usr/local/include/eigen3"):
        if os.path.isdir(candidate):
            include_dirs.append(candidate)
    return [
        Pybind11Extension(
            "dsac_native._dsac_native",
            sources,
            include_dirs=include_dirs,
            depends=sorted(glob.glob(os.path.join("dsac_native", "include", "dsac_native", "*.hpp"))),  # a header change rebuilds
            cxx_std=17,
            extra_compile_args=["-O3", "-fvisibility=hidden"],
            extra_link_args=link_args,
        )
    ]


def _build_ext_cmdclass():
    try:
        from pybind11.setup_helpers import ParallelCompile, build_ext

        ParallelCompile("NPY_NUM_BUILD_JOBS", default=2).install()
        return {"build_ext": build_ext}
    except ImportError:  # pybind11 missing: only pure-Python installs work
        return {}


def _data_files():
    files = [
        ("share/ament_index/resource_index/packages", ["resource/" + PACKAGE]),
        ("share/" + PACKAGE, ["package.xml"]),
        ("share/" + PACKAGE + "/launch", sorted(glob.glob("launch/*.launch.py"))),
        ("share/" + PACKAGE + "/config", sorted(glob.glob("config/*.yaml") + glob.glob("config/*.xml"))),
    ]
    return [(d, f) for d, f in files if f]


CONSOLE_SCRIPTS = [
    # offline tools (glace_core; no ROS imports)
    "glace-eval = glace_core.cli.evaluate:main",
    "glace-extract-features = glace_core.cli.extract_features:main",
    "glace-make-scene = glace_core.cli.make_scene:main",
    "glace-pretrain-encoder = glace_core.cli.pretrain_encoder:main",
    "glace-convert-dataset = glace_core.cli.convert_dataset:main",
    "glace-keyframes = glace_core.cli.keyframes:main",
    # glace-train accepts --bag, so it lives in glace_ros (bags are a ROS concept here)
    "glace-train = glace_ros.train_from_bag:main",
    "train_map = glace_ros.train_from_bag:main",
    # ROS node and bag tools
    "glace-relocalizer = glace_ros.relocalizer_node:main",
    "relocalizer = glace_ros.relocalizer_node:main",
    "glace-relocalizer-lifecycle = glace_ros.relocalizer_lifecycle:main",
    "relocalizer_lifecycle = glace_ros.relocalizer_lifecycle:main",
    "glace-scene-to-bag = glace_ros.scene_to_bag:main",
    "glace-replay-eval = glace_ros.replay_eval:main",
    "replay_eval = glace_ros.replay_eval:main",
]

setup(
    name=PACKAGE,
    version="0.1.0",
    description="GLACE scene coordinate regression relocalization for ROS 2",
    packages=find_packages(include=["glace_core", "glace_core.*", "glace_ros", "glace_ros.*", "dsac_native"]),
    package_data={"dsac_native": ["*.pyi", "py.typed"], "glace_core": ["weights/*.pt", "weights/*.md"]},
    data_files=_data_files(),
    ext_modules=_native_extensions(),
    cmdclass=_build_ext_cmdclass(),
    install_requires=["numpy", "torch", "setuptools"],
    zip_safe=False,
    python_requires=">=3.10",
    maintainer="glace-ros developers",
    maintainer_email="glace-ros@example.com",
    license="BSD-3-Clause",
    entry_points={"console_scripts": CONSOLE_SCRIPTS},
)
