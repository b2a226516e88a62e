"""franka_gripper's Grasp and Move actions as Python message classes, where franka_ros is not installed.

    python -m lara.real_robot.franka_gripper_msgs --out ~/.cache/lara/ros_msgs
    export PYTHONPATH=~/.cache/lara/ros_msgs:$PYTHONPATH     # the node then drives the gripper by actions

franka_ros is not packaged for Debian. The definitions in `real_robot/msg/franka_gripper/` are
franka_ros's (Grasp with GraspEpsilon and force, Move; unchanged from franka_ros 0.7 to 0.10) field
for field, so the MD5 sums match and a real franka_gripper node accepts the goals. Each .action
expands into the seven messages actionlib uses (XAction, XActionGoal, XActionResult,
XActionFeedback, XGoal, XResult, XFeedback) as catkin's genaction does, and Debian's genpy turns
them into Python. Needs `python3-genpy`, `ros-std-msgs` and `ros-actionlib-msgs` (the .msg files
of std_msgs and actionlib_msgs) and `python3-actionlib` to use them: scripts/install-system-deps.sh.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from lara.real_robot.ros import import_rospy

DEFINITIONS = Path(__file__).with_name("msg") / "franka_gripper"
PACKAGE = "franka_gripper"
DEBIAN_MSG_DIRS = {"std_msgs": "/usr/share/std_msgs/msg", "actionlib_msgs": "/usr/share/actionlib_msgs/msg"}


def expand_action(action_file: Path, out_dir: Path) -> list[Path]:
    """Write the seven actionlib messages of one .action file into out_dir; returns their paths."""
    name = action_file.stem
    parts = action_file.read_text().split("\n---")
    if len(parts) != 3:
        raise ValueError(f"{action_file}: an action has goal, result and feedback separated by two '---' lines")
    messages = {f"{name}{kind}": text.strip("\n") + "\n" for kind, text in zip(("Goal", "Result", "Feedback"), parts)}
    messages[f"{name}Action"] = (f"{name}ActionGoal action_goal\n{name}ActionResult action_result\n"
                                 f"{name}ActionFeedback action_feedback\n")
    messages[f"{name}ActionGoal"] = f"Header header\nactionlib_msgs/GoalID goal_id\n{name}Goal goal\n"
    for kind in ("Result", "Feedback"):
        status = "Header header\nactionlib_msgs/GoalStatus status\n"
        messages[f"{name}Action{kind}"] = f"{status}{name}{kind} {kind.lower()}\n"
    paths = []
    for message, text in messages.items():
        paths.append(out_dir / f"{message}.msg")
        paths[-1].write_text(text)
    return paths


def generate(out: Path) -> Path:
    """Generate the `franka_gripper` Python package under `out`; returns `out` (put it on PYTHONPATH)."""
    import_rospy()  # puts Debian's dist-packages (genpy, genmsg) on sys.path
    from genpy.generate_initpy import write_modules
    from genpy.generator import MsgGenerator

    missing = [f"{pkg} ({path})" for pkg, path in DEBIAN_MSG_DIRS.items() if not Path(path).is_dir()]
    if missing:
        raise FileNotFoundError(f"message definitions not found: {', '.join(missing)}; install ros-std-msgs and "
                                "ros-actionlib-msgs (bash scripts/install-system-deps.sh)")
    package_dir = Path(out) / PACKAGE
    with tempfile.TemporaryDirectory() as tmp:
        msg_dir = Path(tmp)
        files = [path for action in sorted((DEFINITIONS / "action").glob("*.action"))
                 for path in expand_action(action, msg_dir)]
        for msg in sorted((DEFINITIONS / "msg").glob("*.msg")):
            files.append(msg_dir / msg.name)
            files[-1].write_text(msg.read_text())
        search_path = {PACKAGE: [str(msg_dir)], **{pkg: [path] for pkg, path in DEBIAN_MSG_DIRS.items()}}
        (package_dir / "msg").mkdir(parents=True, exist_ok=True)
        if MsgGenerator().generate_messages(PACKAGE, [str(f) for f in files], str(package_dir / "msg"), search_path):
            raise RuntimeError(f"genpy failed on {DEFINITIONS}")
    write_modules(str(package_dir / "msg"))
    (package_dir / "__init__.py").write_text("")
    return Path(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder to create the franka_gripper package in")
    out = generate(Path(parser.parse_args(argv).out).expanduser())
    print(f"generated {out / PACKAGE}; use it with: export PYTHONPATH={out}:$PYTHONPATH")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
