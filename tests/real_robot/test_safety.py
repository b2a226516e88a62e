"""The safety layer: pure functions and the stateful hold / e-stop logic."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from lara.real_robot.rotations import (axis_angle_to_quat, quat_multiply, quat_to_axis_angle,
                                       rotation_between)
from lara.real_robot.safety import (Pose, SafetyConfig, SafetyLayer, UnsafeAction, binarize_gripper,
                                    check_action, clamp_norm, safe_target)

CFG = SafetyConfig()
LO, HI = np.array(CFG.workspace_min), np.array(CFG.workspace_max)
finite = st.floats(-1e3, 1e3, allow_nan=False)
vec = lambda n: st.lists(finite, min_size=n, max_size=n).map(np.array)  # noqa: E731
inside = st.tuples(*(st.floats(lo, hi) for lo, hi in zip(LO, HI))).map(np.array)
unit_quat = vec(3).map(lambda v: axis_angle_to_quat(clamp_norm(v, np.pi)))


def home(position=(0.5, 0.0, 0.4)):
    return Pose(np.array(position, dtype=float), np.array([1.0, 0.0, 0.0, 0.0]))


@settings(max_examples=300, deadline=None)
@given(action=vec(7), position=inside, quat=unit_quat)
def test_targets_respect_step_clamps_and_workspace(action, position, quat):
    target, executed = safe_target(action, Pose(position, quat), CFG)
    assert np.linalg.norm(target.position - position) <= CFG.max_translation_m + 1e-9
    assert np.all(target.position >= LO - 1e-9) and np.all(target.position <= HI + 1e-9)
    assert np.linalg.norm(rotation_between(quat, target.quat)) <= CFG.max_rotation_rad + 1e-6
    assert executed[6] in (-1.0, 1.0)
    np.testing.assert_allclose(executed[:3] * CFG.translation_scale_m, target.position - position, atol=1e-9)


@settings(max_examples=200, deadline=None)
@given(action=vec(7), position=vec(3).map(lambda v: v / 100.0))
def test_an_arm_outside_the_box_moves_back_by_at_most_one_step(action, position):
    target, _ = safe_target(action, home(position), CFG)
    assert np.linalg.norm(target.position - position) <= CFG.max_translation_m + 1e-9
    outside = np.maximum(LO - position, 0) + np.maximum(position - HI, 0)
    after = np.maximum(LO - target.position, 0) + np.maximum(target.position - HI, 0)
    assert np.linalg.norm(after) <= np.linalg.norm(outside) + 1e-9


def test_small_actions_pass_unchanged():
    action = np.array([0.2, -0.4, 0.1, 0.1, 0.0, -0.2, 0.7])
    target, executed = safe_target(action, home(), CFG)
    np.testing.assert_allclose(target.position, [0.51, -0.02, 0.405])
    np.testing.assert_allclose(rotation_between(home().quat, target.quat), [0.05, 0.0, -0.1], atol=1e-9)
    np.testing.assert_allclose(executed, [0.2, -0.4, 0.1, 0.1, 0.0, -0.2, 1.0], atol=1e-9)


def test_big_actions_are_clamped_keeping_direction():
    target, _ = safe_target(np.array([10.0, 10.0, 0, 0, 0, 50.0, -1]), home(), CFG)
    step = target.position - home().position
    np.testing.assert_allclose(step, [0.075 / np.sqrt(2), 0.075 / np.sqrt(2), 0], atol=1e-9)
    np.testing.assert_allclose(rotation_between(home().quat, target.quat), [0, 0, 0.15], atol=1e-9)


def test_pure_helpers():
    np.testing.assert_allclose(clamp_norm(np.array([3.0, 4.0]), 1.0), [0.6, 0.8])
    np.testing.assert_allclose(clamp_norm(np.array([0.3, 0.4]), 1.0), [0.3, 0.4])
    assert binarize_gripper(0.01) == 1.0 and binarize_gripper(0.0) == -1.0 and binarize_gripper(-0.9) == -1.0
    for bad in (np.array([0, 0, 0, np.nan, 0, 0, 0]), np.array([np.inf] * 7), np.zeros(6), np.array(["a"] * 7)):
        with pytest.raises(UnsafeAction):
            check_action(bad)
    rotvec = np.array([0.3, -1.2, 0.5])
    np.testing.assert_allclose(quat_to_axis_angle(axis_angle_to_quat(rotvec)), rotvec, atol=1e-12)
    q = axis_angle_to_quat(np.array([0.0, 0.0, 0.4]))
    np.testing.assert_allclose(rotation_between(q, quat_multiply(axis_angle_to_quat(rotvec), q)), rotvec, atol=1e-9)
    with pytest.raises(ValidationError, match="workspace_min"):
        SafetyConfig(workspace_min=(0.5, 0, 0), workspace_max=(0.4, 1, 1))
    with pytest.raises(ValidationError):
        SafetyConfig(max_translation_m=-1)


def test_hold_latches_the_pose_where_holding_began():
    layer = SafetyLayer()
    moving = layer.command(np.full(7, 0.5), home(), 0.01)
    assert not moving.hold and moving.gripper == 1.0 and moving.executed_action is not None
    held = layer.command(None, home((0.55, 0.0, 0.4)), 0.01, missing_reason="server lost")
    assert held.hold and held.reason == "server lost" and held.gripper is None
    np.testing.assert_allclose(held.pose.position, [0.55, 0.0, 0.4])
    drifted = layer.command(None, home((0.6, 0.1, 0.4)), 0.01)  # the arm still settling: target stays put
    np.testing.assert_allclose(drifted.pose.position, [0.55, 0.0, 0.4])
    resumed = layer.command(np.zeros(7), home((0.6, 0.1, 0.4)), 0.01)
    assert not resumed.hold
    np.testing.assert_allclose(resumed.pose.position, [0.6, 0.1, 0.4])


@pytest.mark.parametrize("action, age, reason", [
    (np.array([0, 0, 0, np.nan, 0, 0, 1.0]), 0.01, "rejected action"),
    (np.zeros(7), 0.5, "stale observation"),
    (np.zeros(7), float("inf"), "stale observation"),
    (np.zeros(3), 0.01, "rejected action"),
])
def test_unsafe_inputs_hold(action, age, reason):
    command = SafetyLayer().command(action, home(), age)
    assert command.hold and reason in command.reason
    np.testing.assert_allclose(command.pose.position, home().position)


def test_no_state_means_no_command():
    command = SafetyLayer().command(np.zeros(7), Pose(np.array([np.nan, 0, 0]), np.array([0, 0, 0, 1.0])), 0.0)
    assert command.hold and command.pose is None


def test_estop_latches_until_reset():
    layer = SafetyLayer()
    layer.estop("operator button")
    layer.estop("second reason")
    for _ in range(3):
        command = layer.command(np.zeros(7), home((0.4, 0, 0.3)), 0.0)
        assert command.hold and command.reason == "e-stop: operator button"
    layer.reset_estop()
    assert not layer.command(np.zeros(7), home(), 0.0).hold


def test_a_bad_frame_holds_even_when_the_last_good_one_is_fresh():
    command = SafetyLayer().command(np.zeros(7), home(), 0.01, observation_error="encoding 'mono8'")
    assert command.hold and command.reason == "bad observation: encoding 'mono8'"
