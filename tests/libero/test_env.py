"""The LIBERO env wrapper: fixed init states, fresh placements, observation keys and shapes, upright images,
name errors."""

import numpy as np
import pytest

from lara.benchmarks.libero.env import (NUM_WAIT_STEPS, SUITE_MAX_STEPS, WAIT_ACTION, LiberoEnv, resolve_suite,
                                        resolve_task, versions)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def env():
    env = LiberoEnv("object", 1, camera_size=64)
    yield env
    env.close()


def test_reset_from_fixed_init_state(env):
    obs = env.reset(3)
    assert env.suite == "libero_object" and env.max_steps == SUITE_MAX_STEPS["libero_object"] == 280
    assert obs["instruction"] == env.instruction and "cream cheese" in env.instruction
    assert obs["agentview_rgb"].shape == obs["eye_in_hand_rgb"].shape == (64, 64, 3)
    assert obs["agentview_rgb"].dtype == np.uint8
    for key, size in (("ee_pos", 3), ("ee_ori", 3), ("gripper_qpos", 2), ("joint_qpos", 7)):
        assert obs[key].shape == (size,) and np.all(np.isfinite(obs[key])), key
    state = env.sim_state()
    env.step(np.array([0.5, 0, 0, 0, 0, 0, -1]))
    assert not np.allclose(env.sim_state(), state)
    env.reset(3)
    np.testing.assert_allclose(env.sim_state(), state)  # the same fixed init state again
    env.reset(4)
    assert not np.allclose(env.sim_state(), state)


def test_fresh_placements_vary_by_seed_reproduce_and_settle(env):
    objects = slice(9, None)  # qpos after the 7 arm and 2 finger joints
    env.reset(seed=1)
    first, qpos = env.sim_state(), env.sim.data.qpos.copy()
    for _ in range(NUM_WAIT_STEPS):
        env.step(WAIT_ACTION)
    settle = np.abs(env.sim.data.qpos - qpos)[objects].max()
    env.reset(seed=2)
    other = env.sim.data.qpos.copy()
    env.reset(seed=1)
    np.testing.assert_array_equal(env.sim_state(), first)  # a recorded seed reproduces its placement
    assert np.abs(other - qpos)[objects].max() > 0.005  # objects moved by more than 5 mm between seeds
    assert min(np.abs(state - first).max() for state in env.init_states) > 0.005  # none of the fixed states
    assert settle > 0.001  # placed above their surfaces: the settling steps still matter
    with pytest.raises(ValueError, match="init_state_index .* or seed"):
        env.reset()


def test_images_are_rotated_180_degrees(env):
    obs = env.reset(0)
    raw = env._raw  # robosuite's own (upside-down) rendering
    np.testing.assert_array_equal(obs["agentview_rgb"], raw["agentview_image"][::-1, ::-1])
    np.testing.assert_array_equal(obs["eye_in_hand_rgb"], raw["robot0_eye_in_hand_image"][::-1, ::-1])
    assert obs["agentview_rgb"].std() > 5  # a real rendering, not a blank frame


def test_suite_and_task_names():
    assert resolve_suite("spatial") == resolve_suite("libero_spatial") == "libero_spatial"
    assert resolve_suite("10") == "libero_10"
    with pytest.raises(ValueError, match="libero_goal .goal.") as error:
        resolve_suite("libero_long")
    assert "libero_90" in str(error.value)
    assert resolve_task("object", "2") == 2
    assert resolve_task("object", "pick_up_the_butter_and_place_it_in_the_basket") == 6
    with pytest.raises(ValueError, match="pick_up_the_alphabet_soup_and_place_it_in_the_basket"):
        resolve_task("object", 10)
    with pytest.raises(ValueError, match="Unknown task 'open_the_door'"):
        resolve_task("spatial", "open_the_door")


def test_versions_are_recorded_and_mujoco_is_pinned():
    found = versions()
    assert found["mujoco"] == "3.3.2" and found["robosuite"] == "1.4.0"
    assert found["mujoco_gl"] in ("egl", "osmesa")


def test_versions_warn_on_another_mujoco(monkeypatch):
    from lara.benchmarks.libero import env as env_module

    real = env_module.metadata.version
    monkeypatch.setattr(env_module.metadata, "version", lambda d: "3.3.5" if d == "mujoco" else real(d))
    with pytest.warns(UserWarning, match="mujoco 3.3.5 is installed.*pip install mujoco==3.3.2"):
        assert versions()["mujoco"] == "3.3.5"


def test_gl_backend_probe_and_missing_library_error(monkeypatch):
    import subprocess

    from lara.benchmarks.libero import env as env_module

    monkeypatch.delenv("MUJOCO_GL", raising=False)
    monkeypatch.delenv("PYOPENGL_PLATFORM", raising=False)
    assert env_module.select_gl_backend() in ("egl", "osmesa")  # a real probe in a subprocess
    monkeypatch.delenv("MUJOCO_GL")
    failed = subprocess.CompletedProcess([], 1, "", "ImportError: Cannot initialize a headless display")
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: failed)  # the probe runs in lara.mujoco_gl
    with pytest.raises(RuntimeError, match="libegl1.*libosmesa6"):
        env_module.select_gl_backend()


def test_only_the_cameras_asked_for_are_rendered():
    with pytest.raises(ValueError, match="expected one or more of"):
        LiberoEnv("object", 1, camera_size=32, cameras=("front_rgb",))
    env = LiberoEnv("object", 1, camera_size=32, cameras=("agentview_rgb",))  # a TokenVLA reads agentview only
    try:
        obs = env.reset(0)
        assert obs["agentview_rgb"].shape == (32, 32, 3) and "eye_in_hand_rgb" not in obs
    finally:
        env.close()


def test_in_place_reset_renders_as_the_rebuild_and_physics_only_steps_as_the_camera_env():
    """`reset(rebuild=False)` (the generator's renderer) places the fixtures and renders stored states bit for bit as
    the hard reset does, and the physics-only env (no GL context) steps bit for bit as a camera env: libero_goal's
    stove and cabinet are fixtures, placed in the model by the reset."""
    camera = LiberoEnv("goal", "put_the_bowl_on_the_stove", camera_size=32, cameras=("agentview_rgb",))
    physics = LiberoEnv("goal", "put_the_bowl_on_the_stove", camera_size=None)
    try:
        actions = np.random.default_rng(0).uniform(-1, 1, (8, 7))
        runs = []
        for env in (camera, physics):
            env.reset(seed=5)
            states = []
            for action in actions:
                env.step(action)
                states.append(env.sim_state())
            runs.append(np.stack(states))
        assert np.array_equal(*runs)
        camera.reset(seed=5)
        fixtures = camera.sim.model.body_pos.copy()
        rebuilt = [camera.render_state(s)["agentview_rgb"] for s in runs[0]]
        camera.reset(seed=6)
        assert not np.array_equal(camera.sim.model.body_pos, fixtures)  # another placement moves the fixtures
        camera.reset(seed=5, rebuild=False)
        assert np.array_equal(camera.sim.model.body_pos, fixtures)
        assert np.array_equal(np.stack(rebuilt), np.stack([camera.render_state(s)["agentview_rgb"] for s in runs[0]]))
    finally:
        camera.close()
        physics.close()
