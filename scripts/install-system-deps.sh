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

# SIMPLER (ManiSkill3 / sapien) renders through Vulkan: on a CPU that is Mesa's lavapipe, and bookworm's Mesa
# 22.3.6 finds no device ("Failed to find a supported physical device"); bookworm-backports' 25.x works. Only
# that one package comes from backports: `-t bookworm-backports` would also upgrade libosmesa6 / libegl-mesa0,
# which LIBERO's MuJoCo rendering uses and which stay bookworm's.
vulkan_version=$(dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null || true)
need_vulkan=0
case "$vulkan_version" in 2[5-9].*|[3-9][0-9].*) ;; *) need_vulkan=1 ;; esac

[ ${#missing[@]} -eq 0 ] && [ $need_vulkan -eq 0 ] && exit 0

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
BACKPORTS=/etc/apt/sources.list.d/bookworm-backports.list
if [ $need_vulkan -eq 1 ] && ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    echo "deb http://deb.debian.org/debian bookworm-backports main" | $SUDO tee "$BACKPORTS" >/dev/null
fi
[ $need_vulkan -eq 1 ] && missing_note="mesa-vulkan-drivers/bookworm-backports" || missing_note=""
echo "installing Debian packages: ${missing[*]} ${missing_note}"
$SUDO apt-get update -qq
if [ ${#missing[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ $need_vulkan -eq 1 ]; then
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        mesa-vulkan-drivers/bookworm-backports >/dev/null
fi
