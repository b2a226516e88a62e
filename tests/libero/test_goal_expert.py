"""The scripted expert on libero_goal: a knob twist solved from a fixed init state; uncovered tasks refused."""

import numpy as np
import pytest

from lara.benchmarks.libero import generate
from lara.errors import InputError
from lara.benchmarks.libero.env import LiberoEnv
from lara.benchmarks.libero.expert import ScriptedExpert

pytestmark = pytest.mark.slow


def test_expert_turns_on_the_stove():
    env = LiberoEnv("goal", "turn_on_the_stove", camera_size=None)
    try:
        episode = generate.rollout(env, ScriptedExpert(), init_state_index=3)
        knob = env.sim.model._model.joint("flat_stove_1_button").id
        angle = env.sim.data._data.qpos[env.sim.model._model.jnt_qposadr[knob]]
    finally:
        env.close()
    assert episode["success"] and episode["first_done"] < env.max_steps
    assert angle >= 0.5  # LIBERO's flat stove is on from 0.5 rad
    gripper = episode["actions"][:, 6]
    assert gripper[0] == -1 and gripper.max() == 1 and gripper[-1] == -1  # grasp the knob, let go at the end
    assert np.all(np.isfinite(episode["actions"]))


def test_generate_refuses_an_uncovered_goal_task(tmp_path, capsys):
    with pytest.raises(InputError) as exit_info:
        generate.main(["--suite", "goal", "--tasks", "0,9", "--out", str(tmp_path)])
    message = str(exit_info.value)
    assert "9: put_the_wine_bottle_on_the_rack" in message and "wine_rack_1_top_region" in message
    assert "open_the_middle_drawer" not in message  # task 0 is covered
    assert "--tasks 0,1,2,3,4,5,6,7,8" in message
    assert not list(tmp_path.iterdir())  # refused before any rollout or file
