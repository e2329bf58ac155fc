# Environment for the ROS pieces of glace-ros. Source it: `. scripts/env.sh`.
# Shared by make test, make demo, CI and the bench scripts.
_glace_root="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)"
export VIRTUAL_ENV="${GLACE_VENV:-$_glace_root/.venv}"
export PATH="$VIRTUAL_ENV/bin:$PATH"
# ament_index finds packages (ours, the ROS wheels, tf2_msgs) through this prefix.
case ":${AMENT_PREFIX_PATH:-}:" in
  *":$VIRTUAL_ENV:"*) ;;
  *) export AMENT_PREFIX_PATH="$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}" ;;
esac
# Keep DDS discovery on loopback; ROS_LOCALHOST_ONLY is ignored by Kilted.
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
# Logs go to a temporary folder, not ~/.ros/log.
if [ -z "${ROS_LOG_DIR:-}" ]; then export ROS_LOG_DIR="$(mktemp -d -t glace-roslog.XXXXXX)"; fi
# A shared-memory segment big enough for 640x480 RGB images between processes.
export FASTDDS_DEFAULT_PROFILES_FILE="${FASTDDS_DEFAULT_PROFILES_FILE:-$_glace_root/config/fastdds_shm.xml}"
export RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
export PYTHONUNBUFFERED=1
# torch's OpenMP threads sleep between parallel regions instead of spinning: with more runnable
# threads than cores (other processes, the node's own threads, the background global descriptor) a
# spinning thread holds the core its partner needs. Measured on 2 shared cores (load ~3.5): encoder +
# 2 heads at 480x640 took 1167 ms per frame spinning against 88 ms passive (see
# glace_core/localizer.py "Threads"). Set OMP_WAIT_POLICY=ACTIVE to spin.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
unset _glace_root
