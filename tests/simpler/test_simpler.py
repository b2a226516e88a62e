"""SIMPLER on ManiSkill3: the action mapping, the asset check, a real ManiSkill task through the wrapper, and the
real Bridge task classes with ../shared/simpler_assets plus a stand-in table, scored by the harness."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lara.benchmarks.simpler.assets import (BRIDGE, MissingAssets, check_assets, stage_is_stand_in,
                                            stand_in_asset_dir, write_stand_in_stages)
from lara.benchmarks.simpler.env import controller_rotation, to_maniskill_action

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("LARA_SIMPLER_ASSETS", REPO.parent / "shared" / "simpler_assets"))
CARROT = "PutCarrotOnPlateInScene-v1"
needs_shared = pytest.mark.skipif(not (SHARED / "data" / "robots" / "widowx").is_dir(),
                                  reason=f"the partial SIMPLER asset copy is not at {SHARED} (set LARA_SIMPLER_ASSETS)")


def _rot(axis: str, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return {"x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]), "y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
            "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])}[axis]


def test_gripper_is_binarised_and_flipped_to_the_widowx_convention():
    # ours: -1 open, +1 close; the WidowX controller: +1 open (fingers at 0.038 m), -1 closed
    for ours, theirs in ((-1.0, 1.0), (-0.2, 1.0), (0.0, 1.0), (0.3, -1.0), (1.0, -1.0)):
        assert to_maniskill_action([0.01, -0.02, 0.03, 0, 0, 0, ours])[6] == theirs
    np.testing.assert_allclose(to_maniskill_action([0.01, -0.02, 0.03, 0, 0, 0, 1])[:3], [0.01, -0.02, 0.03])


def test_rotation_mappings_against_hand_computed_values():
    # a pure yaw is the same rotation vector and Euler triple: both mappings pass it through
    for mode in ("simpler", "exact"):
        np.testing.assert_allclose(controller_rotation([0, 0, np.pi / 2], mode), [0, 0, np.pi / 2], atol=1e-12)
        np.testing.assert_allclose(controller_rotation([0.3, 0, 0], mode), [0.3, 0, 0], atol=1e-12)
    # roll 90 deg then pitch 90 deg about the base axes: R = Ry(90) Rx(90) = [[0,1,0],[0,0,-1],[-1,0,0]], a rotation
    # of 120 deg about (1,1,-1)/sqrt(3) (trace 0, axis from R - R^T), which is what SimplerEnv feeds the controller
    rpy = [np.pi / 2, np.pi / 2, 0]
    expected_vector = np.array([1, 1, -1]) / np.sqrt(3) * (2 * np.pi / 3)
    np.testing.assert_allclose(controller_rotation(rpy, "simpler"), expected_vector, atol=1e-9)
    # "exact": intrinsic XYZ angles (a, b, c) with Rx(a) Ry(b) Rz(c) = R, which ManiSkill 3.0.1's controller builds
    a, b, c = controller_rotation(rpy, "exact")
    target = np.array([[0, 1, 0], [0, 0, -1], [-1, 0, 0]])
    np.testing.assert_allclose(_rot("x", a) @ _rot("y", b) @ _rot("z", c), target, atol=1e-9)
    # small rotations: the two agree to second order (per-step deltas are a few degrees)
    small = [0.02, -0.03, 0.05]
    diff = np.abs(controller_rotation(small, "simpler") - controller_rotation(small, "exact")).max()
    assert diff < 2e-3 and diff > 0


def test_missing_assets_give_one_line_and_leave_nothing_behind(tmp_path):
    empty = tmp_path / "assets"
    empty.mkdir()
    with pytest.raises(MissingAssets) as error:
        check_assets(empty, [CARROT])
    message = str(error.value)
    assert "\n" not in message and "bridge_table_1_v1.glb" in message and "wx250s.urdf" in message
    assert "download_asset -y bridge_v2_real2sim" in message
    assert list(empty.iterdir()) == []
    # through the CLI: exit 2, one line, and no asset folder or output folder created
    out, nowhere = tmp_path / "out", tmp_path / "no_assets_here"
    run = subprocess.run([sys.executable, "-m", "lara.cli", "eval", "simpler", "--policy", "scripted", "--tasks",
                          "carrot", "--assets", str(nowhere), "--out", str(out)], capture_output=True, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 2, run.stderr
    assert len(run.stderr.strip().splitlines()) == 1 and "SIMPLER assets missing" in run.stderr
    assert not out.exists() and not nowhere.exists()


def test_unknown_task_names_the_valid_ones():
    from lara.benchmarks.simpler.assets import resolve_task
    from lara.errors import InputError

    assert resolve_task("spoon") == "PutSpoonOnTableClothInScene-v1"
    with pytest.raises(InputError, match="carrot.*PutCarrotOnPlateInScene-v1"):
        resolve_task("banana")


@pytest.mark.slow
def test_a_maniskill_task_without_assets_renders_and_steps_through_the_wrapper(tmp_path):
    from lara.benchmarks.simpler.env import ManiSkillEnv

    env = ManiSkillEnv("PickCube-v1", image_size=64, assets=tmp_path)  # Panda assets ship in the wheel
    obs = env.reset(seed=3)
    image = obs["agentview_rgb"]
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8 and image.std() > 5  # a rendered scene
    start = obs["ee_pos"].copy()
    for _ in range(5):
        obs, info = env.step([0, 0, 1.0, 0, 0, 0, -1])  # normalised: up at full speed
    assert obs["ee_pos"][2] > start[2] + 0.01 and info["success"] is False
    assert obs["joint_qpos"].shape == (7,) and obs["gripper_qpos"].shape == (2,)
    env.close()
    from lara.benchmarks.simpler.env import _import_maniskill

    _import_maniskill(tmp_path)  # a worker's next task, same folder: fine (its ASSET_DIR is MS_ASSET_DIR/data)
    with pytest.raises(RuntimeError, match="cannot switch"):
        _import_maniskill(tmp_path / "elsewhere")


@pytest.fixture(scope="module")
def bridge_assets(tmp_path_factory):
    """The shared partial copy (read-only, linked) plus a stand-in table written here."""
    if not (SHARED / "data" / "robots" / "widowx").is_dir():
        pytest.skip(f"the partial SIMPLER asset copy is not at {SHARED} (set LARA_SIMPLER_ASSETS)")
    root = stand_in_asset_dir(SHARED, tmp_path_factory.mktemp("ms_assets"))
    check_assets(root, [CARROT])
    with pytest.raises(FileExistsError):  # a real stage is never overwritten
        real = tmp_path_factory.mktemp("real") / BRIDGE / "stages" / "bridge_table_1_v1.glb"
        real.parent.mkdir(parents=True)
        real.write_bytes(b"glTF real scene")
        write_stand_in_stages(real.parents[4])
    assert stage_is_stand_in(root, CARROT)
    return root


@needs_shared
@pytest.mark.slow
def test_scripted_expert_solves_carrot_episodes_and_the_harness_scores_them(bridge_assets, tmp_path):
    from lara.benchmarks.simpler.evaluate import evaluate

    # episode ids 0 and 1: the same places, the carrot at yaw 180 and -90 degrees (SIMPLER's two orientations)
    results = evaluate("scripted", ["carrot"], tmp_path / "eval", episodes=2, seeds=1, workers=1,
                       assets=bridge_assets, image_size=64, progress=False)
    task = results["tasks"][0]
    assert (task["successes"], task["trials"]) == (2, 2) and task["is_src_obj_grasped_rate"] == 1.0
    assert all(ep["env_steps"] == 60 and ep["failure_reason"] is None for ep in task["episodes"])  # the full 60 steps
    assert task["instruction"] == "put carrot on plate"
    saved = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert saved["simpler_scores"] is False and saved["stand_in_stages"] == [CARROT]
    assert str(BRIDGE / "stages" / "bridge_table_1_v1.glb") in saved["asset_sha256"]
    assert saved["versions"]["mani-skill"] == "3.0.1" and saved["protocol"]["rotation"] == "simpler"
    assert (tmp_path / "eval" / "success.png").is_file()
    assert all(Path(ep["video"]).stat().st_size > 1000 for ep in task["episodes"])


@needs_shared
@pytest.mark.slow
def test_a_saved_token_vla_runs_on_a_bridge_task_unchanged(bridge_assets, tmp_path):
    """A LIBERO-style checkpoint policy acts on Bridge observations; a do-nothing policy scores 0 (the metric
    is not satisfied by standing still), and its chunks are executed to the step budget."""
    from lara.benchmarks.simpler.evaluate import evaluate
    from lara.vla.token_vla import tiny_token_vla

    tiny_token_vla().save_pretrained(tmp_path / "vla")
    results = evaluate(f"checkpoint:{tmp_path / 'vla'}", ["carrot"], tmp_path / "eval", episodes=1, seeds=1,
                       assets=bridge_assets, max_steps=4, video=False, progress=False)
    episode = results["tasks"][0]["episodes"][0]
    assert episode["failure_reason"] is None and episode["env_steps"] == 4 and episode["success"] is False
    assert results["protocol"]["image_size"] == results["protocol"]["policy_image_size"]
    # the same checkpoint behind `lara serve` (WidowX observations: 6 arm joints), rendered at the size it announces
    from lara.real_robot.ports import free_port, wait_for_port

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "lara.cli", "serve", "--checkpoint", str(tmp_path / "vla"),
                               "--host", "127.0.0.1", "--port", str(port)], env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        wait_for_port(port, timeout_s=60)
        served = evaluate(f"ws://127.0.0.1:{port}", ["carrot"], tmp_path / "served", episodes=1, seeds=1,
                          assets=bridge_assets, max_steps=4, video=False, progress=False)
    finally:
        server.kill()
        server.wait(5)
    episode = served["tasks"][0]["episodes"][0]
    assert episode["failure_reason"] is None and episode["env_steps"] == 4
    assert served["protocol"]["image_size"] == results["protocol"]["image_size"]


@needs_shared
@pytest.mark.slow
def test_generated_bridge_demos_start_from_fresh_placements_and_read_as_training_data(bridge_assets, tmp_path):
    """`lara data generate --bench simpler`: the expert's successful episodes in the LIBERO HDF5 schema, from
    placements off SIMPLER's evaluation configurations, recorded per demo, readable by the trainer's reader."""
    import h5py

    from lara.data import EpisodeDataset

    out = tmp_path / "demos"
    run = subprocess.run([sys.executable, "-m", "lara.cli", "data", "generate", "--bench", "simpler", "--tasks",
                          "carrot", "--episodes", "2", "--camera-size", "32", "--assets", str(bridge_assets),
                          "--no-progress", "--out", str(out)], capture_output=True, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stderr
    summary = json.loads((out / "generation.json").read_text())
    task = summary["tasks"][0]
    assert summary["bench"] == "simpler" and summary["placements"] == "fresh"
    assert task["successes"] == 2 and task["episode_ids"] == task["placement_seeds"][:2]  # seed 0: attempt a -> a
    assert task["placement_seeds"] == [r["placement_seed"] for r in task["attempt_records"] if r["success"]]
    corners = {(round(x, 3), round(y, 3)) for x in (-0.235, -0.085) for y in (-0.075, 0.075)}  # SIMPLER's places
    with h5py.File(out / f"{CARROT}_demo.hdf5") as f:
        demo = f["data/demo_0"]
        assert demo["obs/agentview_rgb"].shape[1:] == (32, 32, 3) and demo["obs/joint_states"].shape[1] == 6
        assert demo["actions"].shape[1] == 7 and demo["states"].shape[1] > 0
        assert json.loads(f["data"].attrs["env_args"])["bench"] == "simpler"
        start = json.loads(demo.attrs["start_poses"])["bridge_carrot_generated_modified"]
        assert (round(start[0], 3), round(start[1], 3)) not in corners
        assert demo.attrs["placement_seed"] == 0
    samples = EpisodeDataset(paths=out, frame_gap=3, action_horizon=3)
    sample = samples[0]
    assert sample["instruction"] == "put carrot on plate" and tuple(sample["lam_frames"].shape[1:]) == (3, 32, 32)


@needs_shared
def test_a_policy_trained_on_simplers_own_configurations_is_refused(bridge_assets, tmp_path):
    """Demos from `--placements simpler` are the evaluation's own scenes: evaluating on those episode ids is refused
    before any worker starts (`--allow-train-episodes` runs them, recorded in results.json)."""
    from lara.benchmarks.simpler.evaluate import evaluate, training_episodes
    from lara.errors import InputError
    from lara.vla.token_vla import tiny_token_vla

    data = tmp_path / "fixed_demos"
    data.mkdir()
    (data / "generation.json").write_text(json.dumps({"bench": "simpler", "placements": "simpler", "tasks": [
        {"env_id": CARROT, "episode_ids": [1, 5]}]}))
    run = tmp_path / "run"
    tiny_token_vla().save_pretrained(run / "final" / "vla")
    (run / "final" / "recipe.json").write_text(json.dumps({"data": {"paths": [str(data)]}}))
    policy = f"checkpoint:{run / 'final' / 'vla'}"
    with pytest.raises(InputError, match=r"SIMPLER's own evaluation configurations.*\[1, 5\].*--allow-train-episodes"):
        evaluate(policy, ["carrot"], tmp_path / "eval", episodes=24, seeds=1, assets=bridge_assets, progress=False)
    assert not (tmp_path / "eval").exists()
    assert training_episodes(policy) == {CARROT: [1, 5]}  # results.json's train_episode_ids
