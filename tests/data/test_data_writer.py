import json
import subprocess
import sys

import h5py
import numpy as np
import pytest

from lara.data.inspect import libero_files_main
from lara.data.libero_hdf5 import LiberoFileError, inspect_libero_hdf5, instruction_from_file_name, open_libero_hdf5
from lara.data.libero_writer import LiberoHDF5Writer


def test_writer_official_layout(tmp_path, demo_arrays, write_file):
    path = tmp_path / "bowl_demo.hdf5"
    demos = write_file(path, [12, 7], seed=3)
    with h5py.File(path, "r") as f:
        data = f["data"]
        assert json.loads(data.attrs["problem_info"])["language_instruction"] == "put the bowl on the plate"
        assert json.loads(data.attrs["env_args"]) == {}
        assert data.attrs["macros_image_convention"] == "opencv"
        assert data.attrs["num_demos"] == 2 and data.attrs["total"] == 19
        demo = data["demo_1"]
        assert demo.attrs["num_samples"] == 7 and bool(demo.attrs["success"])
        for key, shape in {"actions": (7, 7), "states": (7, 0), "robot_states": (7, 9),
                           "rewards": (7,), "dones": (7,)}.items():
            assert demo[key].shape == shape, key
        obs = demo["obs"]
        assert obs["agentview_rgb"].dtype == np.uint8
        np.testing.assert_array_equal(obs["agentview_rgb"][:], demos[1]["agentview_rgb"])
        np.testing.assert_array_equal(obs["eye_in_hand_rgb"][:], demos[1]["eye_in_hand_rgb"])
        np.testing.assert_allclose(obs["ee_pos"][:], demos[1]["ee_states"][:, :3])
        np.testing.assert_allclose(obs["ee_ori"][:], demos[1]["ee_states"][:, 3:])
        np.testing.assert_allclose(demo["actions"][:], demos[1]["actions"])
        assert list(demo["dones"][:]) == [0] * 6 + [1] and demo["rewards"][-1] == 1.0
        quat = demo["robot_states"][:, 5:]
        np.testing.assert_allclose(np.linalg.norm(quat, axis=1), 1.0, rtol=1e-9)
        # quaternion encodes the axis-angle: angle = 2 * atan2(|xyz|, w)
        angle = 2 * np.arctan2(np.linalg.norm(quat[:, :3], axis=1), quat[:, 3])
        np.testing.assert_allclose(angle, np.linalg.norm(demos[1]["ee_states"][:, 3:], axis=1), rtol=1e-6)
    info = inspect_libero_hdf5(path)
    assert info.num_demos == 2 and info.total == 19 and info.demo_lengths == {"demo_0": 12, "demo_1": 7}
    assert info.image_shape == (16, 16, 3) and not info.upside_down and info.has_actions
    assert "eye_in_hand_rgb" in info.obs_keys


def test_exception_inside_with_leaves_nothing(tmp_path, demo_arrays, write_file):
    path = tmp_path / "x_demo.hdf5"
    with pytest.raises(RuntimeError, match="boom"):
        with LiberoHDF5Writer(path, language="pick up the cup") as writer:
            writer.add_demo(**demo_arrays(5, seed=0))
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_previous_file(tmp_path, demo_arrays, write_file):
    path = tmp_path / "x_demo.hdf5"
    write_file(path, [5])
    before = path.read_bytes()
    with pytest.raises(LiberoFileError):
        with LiberoHDF5Writer(path, language="pick up the cup") as writer:
            writer.add_demo(**{**demo_arrays(5, seed=0), "joint_states": np.zeros((4, 7))})  # T differs
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["x_demo.hdf5"]


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("actions", np.zeros((5, 6)), r"`actions` must have shape \[\*, 7\], got \[5, 6\]"),
        ("agentview_rgb", np.zeros((5, 16, 16, 3)), r"`agentview_rgb` must be uint8 .* got dtype float64"),
        ("agentview_rgb", np.zeros((4, 16, 16, 3), np.uint8),
         r"`agentview_rgb` must have shape \[5, \*, \*, 3\], got \[4, 16, 16, 3\]"),
        ("ee_states", np.zeros((5, 7)), r"`ee_states` must have shape \[5, 6\], got \[5, 7\]"),
        ("gripper_states", np.full((5, 2), np.nan), r"`gripper_states` contains NaN"),
        ("eye_in_hand_rgb", np.zeros((5, 16, 16), np.uint8),
         r"`eye_in_hand_rgb` must have shape \[5, \*, \*, 3\], got \[5, 16, 16\]"),
    ],
)
def test_add_demo_validation_names_field(tmp_path, demo_arrays, write_file, field, value, message):
    arrays = {**demo_arrays(5, seed=0), field: value}
    with LiberoHDF5Writer(tmp_path / "v.hdf5", language="pick up the cup") as writer:
        with pytest.raises(LiberoFileError, match=message):
            writer.add_demo(**arrays)
        writer.add_demo(**demo_arrays(5, seed=0))  # the writer stays usable after a rejected demo
    assert inspect_libero_hdf5(tmp_path / "v.hdf5").num_demos == 1


def test_unstorable_attr_is_rejected_before_writing(tmp_path, demo_arrays):
    with LiberoHDF5Writer(tmp_path / "a.hdf5", language="pick up the cup") as writer:
        with pytest.raises(LiberoFileError, match=r"attrs\['operator'\] = None cannot be stored"):
            writer.add_demo(**demo_arrays(5, seed=0), attrs={"operator": None})
        assert writer.add_demo(**demo_arrays(5, seed=0), attrs={"meta": {"fps": 20}}) == "demo_0"
    with h5py.File(tmp_path / "a.hdf5", "r") as f:
        assert json.loads(f["data/demo_0"].attrs["meta"]) == {"fps": 20}


def test_no_demo_writes_nothing(tmp_path):
    with pytest.raises(LiberoFileError, match="no demo was added"):
        with LiberoHDF5Writer(tmp_path / "empty.hdf5", language="pick up the cup"):
            pass
    assert list(tmp_path.iterdir()) == []


def test_conflicting_problem_info_language(tmp_path):
    with pytest.raises(LiberoFileError, match="differs from language"):
        LiberoHDF5Writer(tmp_path / "c.hdf5", language="a", problem_info={"language_instruction": "b"})


def test_open_rejects_truncated_and_foreign_files(tmp_path, demo_arrays, write_file):
    path = tmp_path / "t_demo.hdf5"
    write_file(path, [10])
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(LiberoFileError, match="t_demo.hdf5: cannot be read as HDF5"):
        open_libero_hdf5(path)
    with h5py.File(tmp_path / "other.hdf5", "w") as f:
        f["x"] = 1
    with pytest.raises(LiberoFileError, match=r"other.hdf5: expected a top-level `data` group .*\['x'\]"):
        open_libero_hdf5(tmp_path / "other.hdf5")


def test_instruction_from_official_file_names():
    assert instruction_from_file_name("KITCHEN_SCENE3_turn_on_the_stove_demo.hdf5") == "turn on the stove"
    assert (instruction_from_file_name("/x/pick_up_the_black_bowl_on_the_plate_demo.hdf5")
            == "pick up the black bowl on the plate")


def test_writer_and_file_summary_run_without_torch(tmp_path):
    """The robot recorder may run under the system python (Debian h5py/numpy, no torch), and check its recordings
    there with `python -m lara.data.libero_hdf5`. The writer's earlier import path still resolves."""
    script = (
        "import runpy, sys; sys.modules['torch'] = None\n"  # any `import torch` now raises ImportError
        "import numpy as np\n"
        "from lara.data import LiberoHDF5Writer\n"
        "from lara.data.libero_hdf5 import LiberoHDF5Writer as Earlier\n"
        "assert Earlier is LiberoHDF5Writer\n"
        "T = 3; z = lambda *s: np.zeros(s)\n"
        f"with LiberoHDF5Writer({str(tmp_path / 'r.hdf5')!r}, language='wave') as w:\n"
        "    w.add_demo(actions=z(T, 7), agentview_rgb=np.zeros((T, 4, 4, 3), np.uint8), ee_states=z(T, 6),\n"
        "               gripper_states=z(T, 2), joint_states=z(T, 7))\n"
        f"sys.argv = ['python -m lara.data.libero_hdf5', {str(tmp_path / 'r.hdf5')!r}]\n"
        "runpy.run_module('lara.data.libero_hdf5', run_name='__main__')\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and "r.hdf5: 1 demos, 3 steps, 'wave'" in run.stdout, run.stderr[-2000:]
    assert "  demo_0: 3 steps" in run.stdout
    assert inspect_libero_hdf5(tmp_path / "r.hdf5").total == 3


def test_inspect_command(tmp_path, write_file, capsys):
    write_file(tmp_path / "good_demo.hdf5", [6, 4])
    (tmp_path / "junk.hdf5").write_bytes(b"not hdf5")
    assert libero_files_main([str(tmp_path / "good_demo.hdf5"), str(tmp_path / "junk.hdf5")]) == 1
    out, err = capsys.readouterr()
    assert "good_demo.hdf5: 2 demos, 10 steps, 'put the bowl on the plate', images (16, 16, 3) upright" in out
    assert "  demo_1: 4 steps" in out and "junk.hdf5: cannot be read as HDF5" in err


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_written_files_get_the_umasks_mode(tmp_path, write_file, umask):
    """As `open()` would create them, not mkstemp's 0600 (a generated dataset readable by its group)."""
    import os
    import stat

    from lara.data import EpisodeDataset

    previous = os.umask(umask)
    try:
        write_file(tmp_path / "a_demo.hdf5", [6], seed=1)
        EpisodeDataset(paths=tmp_path, frame_gap=2).save_statistics(tmp_path / "stats")
    finally:
        os.umask(previous)
    for path in (tmp_path / "a_demo.hdf5", tmp_path / "stats" / "dataset_statistics.json"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path
