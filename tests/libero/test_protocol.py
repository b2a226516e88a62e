"""Protocol hygiene in evaluation: trials on the training data's init states are refused (or recorded when
allowed), the render size defaults to the policy's training size, a missing checkpoint fails up front."""

import json

import numpy as np
import pytest

from lara import cli as lara_cli
from lara.benchmarks.libero.evaluate import evaluate
from lara.benchmarks.libero.protocol import (PROTOCOL_CAMERA_SIZE, TrainInitStateOverlap, camera_size_for, overlap,
                                             policy_image_size, training_init_states)


def fake_run(tmp_path, paths, image_size=None, vla=False):
    """RUN/final/{recipe.json, vla/} as a training run leaves them; returns the `checkpoint:` spec."""
    final = tmp_path / "run" / "final"
    (final / "vla").mkdir(parents=True)
    if vla:
        from lara.vla.token_vla import tiny_token_vla

        tiny_token_vla().save_pretrained(final / "vla")
    else:  # enough for the checks that run before any worker loads the policy
        (final / "vla" / "config.json").write_text(json.dumps({"vision_config": {"image_size": 32}}))
    data = {"paths": [str(p) for p in paths], "image_size": image_size}
    (final / "recipe.json").write_text(json.dumps({"data": data, "pretrain": {"video_paths": []}}))
    return f"checkpoint:{final / 'vla'}"


def benchmark_data(folder, task=1, indices=(0, 1)):
    """A generated folder whose generation.json says its demos start from benchmark init states."""
    folder.mkdir(parents=True, exist_ok=True)
    tasks = [{"suite": "libero_object", "task_id": task, "file": None, "successes": len(indices),
              "init_states": {"source": "benchmark", "indices": list(indices), "seeds": list(indices)}}]
    (folder / "generation.json").write_text(json.dumps({"suite": "libero_object", "tasks": tasks}))
    return folder


def demo_file(path, task, **attrs):
    from lara.data.libero_writer import LiberoHDF5Writer

    steps = 3
    with LiberoHDF5Writer(path, language="pick it up", env_args={"suite": "libero_object", "task_id": task}) as writer:
        writer.add_demo(actions=np.zeros((steps, 7)), agentview_rgb=np.zeros((steps, 8, 8, 3), np.uint8),
                        ee_states=np.zeros((steps, 6)), gripper_states=np.zeros((steps, 2)),
                        joint_states=np.zeros((steps, 7)), attrs={"success": True, **attrs})
    return path


def test_training_init_states_from_generation_json_and_demo_attrs(tmp_path):
    benchmark = benchmark_data(tmp_path / "a")
    files = tmp_path / "b"
    files.mkdir()
    demo_file(files / "two_demo.hdf5", task=2, init_state_index=5, placement_seed=2023)
    demo_file(files / "three_demo.hdf5", task=3, placement_seed=3027)  # fresh: overlaps nothing
    spec = fake_run(tmp_path, [benchmark, files, tmp_path / "gone"])
    found = training_init_states(spec)
    assert found.benchmark == {("libero_object", 1): [0, 1], ("libero_object", 2): [5]}
    assert found.unknown == [str(tmp_path / "gone")] and found.recipe.name == "recipe.json"
    trials = {("libero_object", 1): [0, 1, 2], ("libero_object", 3): [0, 1, 2]}
    assert overlap(trials, found) == [{"suite": "libero_object", "task_id": 1, "indices": [0, 1]}]
    assert training_init_states("scripted") is None and overlap(trials, None) == []


def test_trials_on_training_init_states_are_refused(tmp_path, capsys):
    spec = fake_run(tmp_path, [benchmark_data(tmp_path / "data")])
    with pytest.raises(TrainInitStateOverlap, match="libero_object task 1: init states 0-1.*--allow-train-init-states"):
        evaluate(spec, ["object"], tmp_path / "eval", tasks=[1], trials=2, progress=False)
    assert not (tmp_path / "eval").exists()  # refused before any worker or file
    assert lara_cli.main(["eval", "libero", "--policy", spec, "--suite", "object", "--tasks", "1", "--trials", "3",
                          "--out", str(tmp_path / "eval")]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "init states 0-1" in error and "--allow-train-init-states" in error


@pytest.mark.slow
def test_allowed_overlap_runs_at_the_training_size_and_is_recorded(tmp_path):
    spec = fake_run(tmp_path, [benchmark_data(tmp_path / "data", indices=(1, 7))], image_size=48, vla=True)
    with pytest.warns(UserWarning, match="libero_object task 1: init states 1"):
        results = evaluate(spec, ["object"], tmp_path / "eval", tasks=[1], trials=2, max_steps=2, video=False,
                           progress=False, allow_train_init_states=True)
    protocol = json.loads((tmp_path / "eval" / "results.json").read_text())["protocol"]
    assert protocol == results["protocol"]
    assert protocol["train_init_state_overlap"] == [{"suite": "libero_object", "task_id": 1, "indices": [1]}]
    assert protocol["init_states"] == [{"suite": "libero_object", "task_id": 1, "source": "benchmark",
                                        "indices": [0, 1]}]
    assert protocol["train_init_states"] == [{"suite": "libero_object", "task_id": 1, "indices": [1, 7]}]
    assert protocol["camera_size"] == protocol["policy_image_size"] == 48  # the recipe's data.image_size
    assert all(e["failure_reason"] is None and e["steps"] == 2 for e in results["tasks"][0]["episodes"])


def test_camera_size_defaults_to_the_training_size_and_warns_when_it_differs(tmp_path):
    assert camera_size_for(None, 64) == (64, None)
    assert camera_size_for(None, None) == (PROTOCOL_CAMERA_SIZE, None) == (256, None)
    assert camera_size_for(64, 64) == (64, None) and camera_size_for(128, None) == (128, None)
    size, warning = camera_size_for(256, 64)
    assert size == 256 and "--camera-size 256 px" in warning and "trained on 64 px" in warning
    assert len(warning.splitlines()) == 1
    assert policy_image_size(fake_run(tmp_path / "recipe", [], image_size=[64, 64])) == 64
    assert policy_image_size(fake_run(tmp_path / "config", [], vla=True)) == 32  # no data.image_size: the VLA's
    assert policy_image_size("scripted") is None


@pytest.mark.parametrize("policy, message", [
    ("scriptd", "Did you mean 'scripted'?"),
    ("no_such_module:make_policy", "no module named 'no_such_module' on the Python path"),
    ("lara.no_such:make_policy", "no module named 'lara.no_such'"),
    ("RUN", "pass the VLA inside it: --policy checkpoint:RUN/final/vla"),
])
def test_a_bad_policy_is_one_line_before_any_worker(tmp_path, capsys, policy, message):
    """Before the check these died in a worker's initializer, ending in BrokenProcessPool."""
    if policy == "RUN":
        run = tmp_path / "run"
        fake_run(tmp_path, [])
        policy, message = f"checkpoint:{run}", message.replace("RUN", str(run))
    from lara.cli import main as lara_main

    out = tmp_path / "eval"
    assert lara_main(["eval", "libero", "--policy", policy, "--suite", "object", "--tasks", "0", "--trials", "1",
                      "--out", str(out)]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and message in error and not out.exists()


def test_a_missing_checkpoint_is_one_error_before_any_worker(tmp_path, capsys):
    spec = f"checkpoint:{tmp_path / 'nowhere'}"
    argv = ["eval", "libero", "--policy", spec, "--suite", "object", "--out", str(tmp_path / "eval")]
    assert lara_cli.main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "holds no config.json" in error and "final/vla" in error
    with pytest.raises(FileNotFoundError, match="holds no config.json"):
        evaluate(spec, ["object"], tmp_path / "eval", trials=1, progress=False)
    with pytest.raises(ValueError, match="'module:factory'"):
        evaluate("no_colon", ["object"], tmp_path / "eval", trials=1, progress=False)


@pytest.mark.parametrize("flags, message", [
    (["--tasks", "99"], "Unknown task 99 in libero_object. Valid tasks (index or name):\n  0: pick_up_the_alphabet"),
    (["--trials", "0"], "argument --trials: expected an integer >= 1, got '0'"),
    (["--workers", "0"], "argument --workers: expected an integer >= 1, got '0'"),
], ids=["task", "trials", "workers"])
def test_bad_eval_arguments_are_refused_before_any_output_folder(tmp_path, capsys, flags, message):
    out = tmp_path / "runs" / "eval"
    argv = ["eval", "libero", "--policy", "scripted", "--suite", "object", *flags, "--out", str(out)]
    assert lara_cli.main(argv) == 2
    error = capsys.readouterr().err
    assert error.startswith("lara eval: error: ") and message in error and "Traceback" not in error
    assert not (tmp_path / "runs").exists()


def test_the_progress_bar_shows_episodes_done_and_the_running_success_rate(tmp_path, monkeypatch, capsys):
    """Episodes stand in for the workers' (run_jobs); the bar is what `lara eval` prints while they finish."""
    from lara.benchmarks.libero import evaluate as evaluation

    def run_jobs(jobs, *args):
        for index, (suite, task, trial, _, _) in enumerate(jobs):
            yield {"suite": suite, "task_id": task, "task_name": "t", "instruction": "i", "trial": trial,
                   "init_state": trial, "success": index != 1, "steps": 5, "env_steps": 15, "seconds": 0.1,
                   "cpu_seconds": 0.1, "failure_reason": None, "video": None, "worker_pid": 1,
                   "worker_startup_s": 0.1, "env_build_s": 0.1}

    monkeypatch.setattr(evaluation, "run_jobs", run_jobs)
    results = evaluation.evaluate("scripted", ["object"], tmp_path / "eval", tasks=[0], trials=3, video=False)
    assert results["tasks"][0]["successes"] == 2
    frames = capsys.readouterr().err.split("\r")
    assert any("1/3" in f and "success=1/1 (100.0%)" in f for f in frames)
    assert any("3/3" in f and "success=2/3 (66.7%)" in f for f in frames)


def test_frames_of_the_lam_warm_up_count_as_training_data(tmp_path):
    spec = fake_run(tmp_path, [])
    recipe = tmp_path / "run" / "final" / "recipe.json"
    warmup = [{"path": str(benchmark_data(tmp_path / "frames", indices=(3,))), "labelled_per_task": 1,
               "episodes": "unlabelled"}]  # a source entry, e.g. the action-free side of a label-scarce split
    recipe.write_text(json.dumps({**json.loads(recipe.read_text()), "posttrain": {"lam_warmup_paths": warmup}}))
    assert training_init_states(spec).benchmark == {("libero_object", 1): [3]}
