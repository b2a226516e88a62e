"""Scripted demos (expert success from a fresh placement, HDF5 output) and the evaluation protocol (workers,
videos, failures)."""

import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from lara.benchmarks.libero import generate
from lara.errors import InputError
from lara.benchmarks.libero.evaluate import evaluate
from lara.benchmarks.libero.protocol import overlap, training_init_states
from lara.benchmarks.rollout import check_chunk

pytestmark = pytest.mark.slow
POLICIES = Path(__file__).parent / "policies.py"


OBJECT_TASK_1 = ["--suite", "object", "--tasks", "1", "--episodes", "1", "--camera-size", "32", "--no-progress"]


def test_expert_demo_on_libero_object_from_a_fresh_placement(generated_demos, tmp_path):
    data = generated_demos(*OBJECT_TASK_1)  # the same generation as the two-camera side of the agentview-only test
    summary = json.loads((data / "generation.json").read_text())
    task = summary["tasks"][0]
    assert task["successes"] == task["attempts"] == 1 and task["success_rate"] == 1.0
    assert task["init_states"] == {"source": "fresh", "seeds": [1009]} and task["max_attempts"] == 3
    assert summary["versions"]["mujoco"] == "3.3.2" and summary["init_states"] == "fresh"
    with h5py.File(data / "pick_up_the_cream_cheese_and_place_it_in_the_basket_demo.hdf5") as f:
        demo = f["data/demo_0"]
        T = demo.attrs["num_samples"]
        assert demo.attrs["success"] and 60 < T < 280 + generate.TAIL_STEPS
        assert demo.attrs["placement_seed"] == 1009 and "init_state_index" not in demo.attrs
        assert demo["obs/agentview_rgb"].shape == (T, 32, 32, 3)
        assert demo["obs/eye_in_hand_rgb"].shape == (T, 32, 32, 3)
        assert demo["actions"].shape == (T, 7) and demo["states"].shape[0] == T
        gripper = demo["actions"][:, 6]
        assert gripper[0] == -1 and gripper.max() == 1 and gripper[-1] == -1  # grasp, then release
        assert "cream cheese" in json.loads(f["data"].attrs["problem_info"])["language_instruction"]
    # a run trained on these demos overlaps none of the evaluation's fixed init states (folder or file)
    final = tmp_path / "run" / "final"
    final.mkdir(parents=True)
    file = data / "pick_up_the_cream_cheese_and_place_it_in_the_basket_demo.hdf5"
    (final / "recipe.json").write_text(json.dumps({"data": {"paths": [str(data), str(file)]}}))
    train = training_init_states(f"checkpoint:{final / 'vla'}")
    assert train.benchmark == {} and train.unknown == []
    assert overlap({("libero_object", 1): list(range(50))}, train) == []


def test_agentview_only_generation_renders_and_writes_one_camera(generated_demos, tmp_path):
    """`--cameras agentview_rgb` (what `lara demo` renders): the files hold no wrist images and say so, the
    agentview frames are those of a two-camera generation, and a policy reading the wrist camera is refused."""
    one, common = tmp_path / "one", OBJECT_TASK_1
    both = generated_demos(*common)  # the expert-demo test's generation
    assert generate.main([*common, "--cameras", "agentview_rgb", "--out", str(one)]) == 0
    assert json.loads((one / "generation.json").read_text())["cameras"] == ["agentview_rgb"]
    assert json.loads((both / "generation.json").read_text())["cameras"] == ["agentview_rgb", "eye_in_hand_rgb"]
    name = "pick_up_the_cream_cheese_and_place_it_in_the_basket_demo.hdf5"
    with h5py.File(one / name) as f, h5py.File(both / name) as g:
        assert "eye_in_hand_rgb" not in f["data/demo_0/obs"]
        assert json.loads(f["data"].attrs["env_args"])["env_kwargs"]["camera_names"] == ["agentview"]
        assert json.loads(f["data"].attrs["env_args"])["env_kwargs"]["control_freq"] == 20  # the frames' time base
        np.testing.assert_array_equal(f["data/demo_0/obs/agentview_rgb"][:], g["data/demo_0/obs/agentview_rgb"][:])
    from lara.data.libero_source import LiberoFileError, open_source

    with pytest.raises(LiberoFileError, match="no camera 'eye_in_hand_rgb'"):
        open_source(one / name, cameras=("agentview_rgb", "eye_in_hand_rgb"))
    assert [ep.fps for ep in open_source(one / name, cameras=("agentview_rgb",)).episodes()] == [20]
    for bad in ("eye_in_hand_rgb", "agentview_rgb,front", "agentview_rgb,agentview_rgb"):
        with pytest.raises(InputError, match="--cameras"):
            generate.main([*common, "--cameras", bad, "--out", str(tmp_path / "bad")])
    assert not (tmp_path / "bad").exists()


def test_scripted_policy_with_two_workers(tmp_path):
    results = evaluate("scripted", ["object"], tmp_path, tasks=[1], trials=2, workers=2, camera_size=64,
                       max_steps=15, progress=False)
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["average_success_rate"] == results["average_success_rate"]
    task = on_disk["tasks"][0]
    assert task["trials"] == 2 and [e["trial"] for e in task["episodes"]] == [0, 1]
    assert all(e["steps"] == 15 and e["env_steps"] == 25 and e["failure_reason"] is None for e in task["episodes"])
    assert on_disk["versions"]["mujoco"] == "3.3.2" and on_disk["env_steps"] == 50
    protocol = on_disk["protocol"]
    assert protocol["init_states"] == [{"suite": "libero_object", "task_id": 1, "source": "benchmark", "indices": [0, 1]}]
    assert protocol["train_init_state_overlap"] == [] and protocol["train_init_states"] is None  # not a checkpoint
    assert protocol["camera_size"] == 64 and protocol["policy_image_size"] is None
    assert on_disk["env_steps_per_s"] > 0 and "libero_object" in on_disk["suites"]
    assert on_disk["threads_per_worker"] == 1 and len(on_disk["worker_startup_s"]) == 2  # one per worker
    assert all(0 < s < on_disk["wall_time_s"] for s in on_disk["worker_startup_s"]) and on_disk["env_build_s"] > 0
    assert all(e["cpu_seconds"] > 0 for e in task["episodes"])
    for trial in (0, 1):
        assert (tmp_path / "videos" / "libero_object" / f"task01_trial{trial:03d}.mp4").stat().st_size > 1000
    assert (tmp_path / "success.png").read_bytes()[:4] == b"\x89PNG"


def test_episodes_are_seeded_by_seed_task_and_trial_whichever_worker_runs_them(tmp_path):
    """The rollout loop seeds numpy per episode (seed + 1000 task + trial): a policy's draws are the same with one
    worker or two, differ from trial to trial, and change with --seed."""
    def draws(workers, seed, trials=2):
        results = evaluate(f"{POLICIES}:random_draws", ["object"], tmp_path / f"{workers}_{seed}", tasks=[0],
                           trials=trials, workers=workers, seed=seed, camera_size=32, max_steps=20, video=False,
                           progress=False)
        return [(e["failure_reason"].splitlines()[0], e["steps"], e["chunks"]) for e in results["tasks"][0]["episodes"]]

    one = draws(1, seed=7)
    assert all(reason.startswith("policy.act raised RuntimeError: draws [") for reason, _, _ in one)
    assert len({reason for reason, _, _ in one}) == 2  # each trial its own draws
    assert draws(2, seed=7) == one  # two workers: each runs one of the trials
    other = draws(1, seed=8, trials=1)
    assert len(other) == 1 and other[0][0] != one[0][0]  # trial 0 under another seed


def test_bad_actions_fail_their_episode_and_evaluation_goes_on(tmp_path):
    results = evaluate(f"{POLICIES}:flaky_policy", ["object"], tmp_path, tasks=[0], trials=3, workers=1,
                       camera_size=32, max_steps=6, video=False, progress=False)
    episodes = results["tasks"][0]["episodes"]
    assert [e["success"] for e in episodes] == [False, False, False]
    assert "NaN" in episodes[0]["failure_reason"] and episodes[0]["steps"] == 0
    assert "shape [4, 6]" in episodes[1]["failure_reason"]
    assert episodes[2]["failure_reason"] is None and episodes[2]["steps"] == 6
    assert {e["worker_pid"] for e in episodes} != {os.getpid()}  # one worker is a subprocess too


def test_check_chunk():
    assert check_chunk(np.zeros((3, 7))) is None and check_chunk(np.zeros(7)) is None
    assert "shape [0, 7]" in check_chunk(np.zeros((0, 7)))
    assert "NaN" in check_chunk(np.array([[0, 0, 0, np.inf, 0, 0, 1]]))


def test_action_noise_perturbs_what_the_env_executes_and_records_the_experts_actions():
    """DART demonstrations (`--action-noise`): the env executes the expert's action plus noise on the arm, the file
    gets the expert's own action, and the same start gives the same noisy episode."""
    from lara.benchmarks.libero.env import LiberoEnv
    from lara.benchmarks.libero.expert import ScriptedExpert

    env = LiberoEnv("object", 1, camera_size=None)
    executed, step = [], env.step
    env.step = lambda action: (executed.append(np.array(action)), step(action))[1]
    try:
        clean = generate.rollout(env, ScriptedExpert(), seed=1009)
        executed.clear()
        noisy = generate.rollout(env, ScriptedExpert(), seed=1009, action_noise=0.1)
        sent = np.stack(executed[generate.NUM_WAIT_STEPS:])
        again = generate.rollout(env, ScriptedExpert(), seed=1009, action_noise=0.1)
    finally:
        env.close()
    assert clean["success"] and noisy["success"]
    difference = sent - noisy["actions"]
    assert 0.07 < difference[:, :6].std() < 0.11 and np.abs(sent[:, :6]).max() <= 1  # noise, clipped to the range
    np.testing.assert_array_equal(sent[:, 6], noisy["actions"][:, 6])  # the gripper command stays clean
    assert not np.allclose(noisy["ee_states"][20], clean["ee_states"][20])  # it took the hand off the clean path
    np.testing.assert_array_equal(again["states"], noisy["states"])
    np.testing.assert_array_equal(again["actions"], noisy["actions"])


def test_a_bad_action_noise_is_refused_in_one_line(tmp_path):
    """What a good value writes (generation.json and each episode's `action_noise`) is checked by the demo's test,
    which generates with noise anyway."""
    common = ["--suite", "object", "--tasks", "1", "--episodes", "1", "--attempts", "2",
              "--camera-size", "32", "--cameras", "agentview_rgb", "--no-progress"]
    with pytest.raises(InputError, match=r"argument --action-noise: expected a finite number >= 0 and <= 1, got '-0.1'"):
        generate.main([*common, "--action-noise", "-0.1", "--out", str(tmp_path / "bad")])
    assert not (tmp_path / "bad").exists()
