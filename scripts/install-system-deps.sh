#!/usr/bin/env bash
# Debian packages the tests and the demo need. Idempotent; skips what is already installed.
# Runs as root (CI, these machines) or through sudo where available.
set -euo pipefail

PACKAGES=(
    # headless OpenGL for MuJoCo / LIBERO rendering (EGL first, OSMesa fallback)
    libegl1 libgl1 libosmesa6 libglfw3
    # video writing for rollout MP4s
    ffmpeg
    # ROS 1 for the real-robot node and its tests (real_robot/ros.py puts these on the venv's path)
    ros-core python3-rospy python3-sensor-msgs python3-geometry-msgs python3-std-msgs python3-std-srvs
    python3-genpy  # generates franka_msgs classes (franka_ros is not packaged for Debian)
    # franka_gripper actions without franka_ros: actionlib, and the .msg files genpy needs (franka_gripper_msgs.py)
    python3-actionlib ros-std-msgs ros-actionlib-msgs
)

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "installing Debian packages: ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
