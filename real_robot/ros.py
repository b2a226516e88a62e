"""How the venv reaches ROS 1: Debian's rospy and message packages, from /usr/lib/python3/dist-packages.

Debian bookworm ships ROS 1 for its system python3 (3.11), the same minor version as the venv, and
the ROS Python packages are pure Python. `import_rospy()` appends Debian's dist-packages to the
*end* of sys.path when rospy is not otherwise importable, so the venv's own packages (numpy,
pydantic, yaml, ...) always win and only what the venv lacks (rospy, genpy, *_msgs) comes from
Debian. Only `ros_node.py`, `sim_franka.py`, `franka_gripper_msgs.py` and their tests call it; nothing
else in LARA sees ROS.
Install the Debian side with `bash scripts/install-system-deps.sh` (ros-core + message packages).
"""

from __future__ import annotations

import os
import sys

DEBIAN_DIST_PACKAGES = "/usr/lib/python3/dist-packages"


def import_rospy():
    try:
        import rospy
    except ImportError:
        if not os.path.isdir(os.path.join(DEBIAN_DIST_PACKAGES, "rospy")):
            raise ImportError(
                "rospy is not importable and Debian's ROS 1 packages are missing; run "
                "`bash scripts/install-system-deps.sh` (installs ros-core, python3-rospy and the message packages)."
            ) from None
        if sys.version_info[:2] != (3, 11):
            raise ImportError(
                f"Debian bookworm's rospy is built for Python 3.11; this interpreter is "
                f"{sys.version_info.major}.{sys.version_info.minor}. Use a 3.11 venv or the system python3."
            ) from None
        sys.path.append(DEBIAN_DIST_PACKAGES)
        import rospy
    return rospy
