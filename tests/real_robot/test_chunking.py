"""The chunk bookkeeping shared by the ROS node and the simulated harnesses (`real_robot/chunking.py`), without ROS."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lara.real_robot.chunking import ActionQueue, SimulatedLatency


def index_chunk(step: int, length: int = 10) -> np.ndarray:
    """A chunk computed on the observation of `step` whose action i encodes the step it is meant for, step + i."""
    return np.repeat(np.arange(step, step + length, dtype=np.float64)[:, None], 7, axis=1)  # (T, 7)


def run(schedule: SimulatedLatency, steps: int, chunk_length: int = 10) -> list:
    """Drive a schedule for `steps` env steps with the index policy; the executed actions' indices (None = held),
    as floats: an ensembled average of equal indices may differ from the index in its last bit (summation order
    follows the CPU's SIMD width), so compare them with a tolerance, never after int()."""
    executed = []
    for _ in range(steps):
        if schedule.wants_chunk():
            schedule.submit(index_chunk(schedule.queue.step, chunk_length))
        action = schedule.next_action()
        executed.append(None if action is None else float(action[0]))
    return executed


def test_prefetch_chunk_replaces_the_tail_aligned_by_the_actions_executed_since_its_observation():
    queue = ActionQueue(execute_steps=8)
    assert queue.due(prefetch_steps=3) and queue.add(index_chunk(0), observation_step=0) == 8
    executed = [int(queue.pop()[0]) for _ in range(5)]
    assert queue.remaining == 3 and queue.due(prefetch_steps=3) and not queue.due(prefetch_steps=2)
    observed_at = queue.step  # the next chunk is asked for on the observation of step 5 ...
    executed += [int(queue.pop()[0]) for _ in range(2)]  # ... and two actions run while it is computed
    assert queue.add(index_chunk(observed_at) + 0.5, observed_at) == 6  # its actions 2..7: steps 7..12
    while queue.remaining:
        executed.append(queue.pop()[0])
    assert executed == [0, 1, 2, 3, 4, 5, 6, 7.5, 8.5, 9.5, 10.5, 11.5, 12.5]  # the new chunk's, from step 7
    assert queue.pop() is None and queue.step == 13  # nothing predicted: hold, the step stays


@pytest.mark.parametrize("execute_steps, prefetch_steps, latency_steps, chunk_length", [
    (8, 3, 2, 10), (8, 3, 3, 10), (10, 9, 1, 10), (None, 4, 2, 6), (5, 0, 2, 10), (8, 2, 5, 10), (3, 2, 0, 4),
])
def test_prefetch_never_repeats_or_skips_an_action(execute_steps, prefetch_steps, latency_steps, chunk_length):
    schedule = SimulatedLatency(ActionQueue(execute_steps), prefetch_steps, latency_steps)
    executed = run(schedule, 200, chunk_length)
    ran = [i for i in executed if i is not None]
    assert ran == list(range(len(ran))) and len(ran) > 100  # every step once, in order
    assert schedule.holds == executed.count(None) and schedule.chunks > 10


def test_prefetch_against_synchronous_holds_hand_counted():
    # synchronous, 3 steps of latency, 5 actions per chunk: 3 holds, then 5 actions, and again
    sync = SimulatedLatency(ActionQueue(execute_steps=5), prefetch_steps=0, latency_steps=3)
    assert run(sync, 16) == [None] * 3 + [0, 1, 2, 3, 4] + [None] * 3 + [5, 6, 7, 8, 9]
    assert (sync.holds, sync.chunks) == (6, 2)
    # prefetching with 3 actions left, 2 steps of latency: only the first chunk is waited for
    prefetch = SimulatedLatency(ActionQueue(execute_steps=5), prefetch_steps=3, latency_steps=2)
    assert run(prefetch, 16) == [None] * 2 + list(range(14))
    assert prefetch.holds == 2
    # one request is out at a time, so a chunk must outlast two latencies: with 5 actions and 3 steps of
    # latency, a chunk asked for on arrival of the last one comes when that one's actions are used up
    slow = SimulatedLatency(ActionQueue(execute_steps=5), prefetch_steps=4, latency_steps=3)
    assert run(slow, 16) == [None] * 3 + [0, 1, 2, 3, 4, 5, None, 6, 7, 8, 9, 10, None]
    # latency 0, whole chunks: a plain open-loop rollout, as the harnesses ran before
    plain = SimulatedLatency(ActionQueue(), prefetch_steps=0, latency_steps=0)
    assert run(plain, 12, chunk_length=4) == list(range(12)) and (plain.holds, plain.chunks) == (0, 3)


def test_prefetch_late_chunk_is_dropped_and_the_tail_it_would_replace_is_kept():
    queue = ActionQueue(execute_steps=4)
    queue.add(index_chunk(0), 0)
    queue.pop(), queue.pop()
    late = index_chunk(0) + 100  # computed on step 0's observation; steps 0..3 may run from it, 0 and 1 ran ...
    queue.pop(), queue.pop()  # ... and then 2 and 3: nothing of it is ahead
    queue.add(index_chunk(2), 2)  # meanwhile a chunk from step 2: its actions for steps 4, 5
    assert queue.add(late, 0) == 0 and queue.remaining == 2
    assert [queue.pop()[0], queue.pop()[0]] == [4, 5]
    with pytest.raises(ValueError, match="from step 9 cannot be added at step 6"):
        queue.add(index_chunk(9), 9)


def test_temporal_ensembling_against_hand_computed_weighted_averages():
    # decay ln 2: weights 1, 1/2, 1/4 for the oldest, middle and newest prediction -> 4/7, 2/7, 1/7
    queue = ActionQueue(execute_steps=3, ensemble_decay=math.log(2))
    a, b, c = (np.full((3, 7), v) for v in (7.0, 14.0, 21.0))
    a[:, 6], b[:, 6], c[:, 6] = -1.0, 1.0, 1.0  # a gripper the oldest opens and the newer two close
    queue.add(a, 0)
    np.testing.assert_allclose(queue.pop(), [7] * 6 + [-1])  # step 0: a alone
    queue.add(b, 1)
    np.testing.assert_allclose(queue.pop(), [(2 * 7 + 1 * 14) / 3] * 6 + [(2 * -1 + 1 * 1) / 3])  # step 1: a, b
    queue.add(c, 2)
    np.testing.assert_allclose(queue.pop(), [(4 * 7 + 2 * 14 + 1 * 21) / 7] * 6 + [(-4 + 2 + 1) / 7])  # a, b, c
    np.testing.assert_allclose(queue.pop(), [(2 * 14 + 21) / 3] * 6 + [1])  # step 3: b, c (a's horizon ended)
    # decay 0: the plain mean; negative: the newest weighs most; huge: the oldest alone (no overflow either way)
    for decay, expected in ((0.0, 14.0), (-math.log(2), (7 + 2 * 14 + 4 * 21) / 7), (1e6, 7.0), (-1e6, 21.0)):
        queue = ActionQueue(execute_steps=3, ensemble_decay=decay)
        for step, chunk in enumerate((a, b, c)):
            queue.add(chunk, step)
            action = queue.pop()
        assert action[0] == pytest.approx(expected)


def act_reference(chunks: list[np.ndarray], k: float) -> list[np.ndarray]:
    """ACT's temporal aggregation as its imitate_episodes.py writes it: a query every step into
    all_time_actions[t, t:t + num_queries], then exp(-k * arange(n)) over the populated rows, oldest first."""
    steps, num_queries = len(chunks), len(chunks[0])
    all_time_actions = np.zeros((steps, steps + num_queries, 7))
    out = []
    for t in range(steps):
        all_time_actions[t, t:t + num_queries] = chunks[t]
        actions_for_curr_step = all_time_actions[:, t]
        actions_for_curr_step = actions_for_curr_step[np.all(actions_for_curr_step != 0, axis=1)]
        exp_weights = np.exp(-k * np.arange(len(actions_for_curr_step)))
        exp_weights = exp_weights / exp_weights.sum()
        out.append((actions_for_curr_step * exp_weights[:, None]).sum(axis=0))
    return out


def test_temporal_ensembling_every_step_is_act():
    rng = np.random.default_rng(0)
    chunks = [rng.uniform(0.1, 1.0, (6, 7)) for _ in range(15)]  # nonzero: ACT marks empty slots by zeros
    schedule = SimulatedLatency(ActionQueue(execute_steps=6, ensemble_decay=0.3), prefetch_steps=5)
    ours = []
    for chunk in chunks:
        assert schedule.wants_chunk()  # every step
        schedule.submit(chunk)
        ours.append(schedule.next_action())
    np.testing.assert_allclose(ours, act_reference(chunks, 0.3), rtol=1e-12)


@pytest.mark.parametrize("query_every, latency_steps", [(1, 0), (1, 2), (3, 2), (2, 3)])
def test_temporal_ensembling_aligns_chunks_by_step(query_every, latency_steps):
    # chunks that agree on what each step's action is: any misalignment would show in the average
    schedule = SimulatedLatency(ActionQueue(execute_steps=8, ensemble_decay=0.01), prefetch_steps=8 - query_every,
                                latency_steps=latency_steps)
    executed = run(schedule, 60)
    assert executed[:latency_steps] == [None] * latency_steps  # the first chunk is waited for, never another
    assert executed[latency_steps:] == pytest.approx(list(range(60 - latency_steps)), rel=0, abs=1e-9)
    assert max(len(p) for p in schedule.queue.predictions.values()) > 1  # they did overlap


def test_bad_prefetch_and_ensemble_queue_arguments():
    with pytest.raises(ValueError, match="execute_steps must be at least 1"):
        ActionQueue(execute_steps=0)
    with pytest.raises(ValueError, match="ensemble_decay must be a finite number"):
        ActionQueue(ensemble_decay=float("inf"))
    with pytest.raises(ValueError, match=r"expected a chunk of shape \[T, A\]"):
        ActionQueue().add(np.zeros(7), 0)
    with pytest.raises(ValueError, match="must be >= 0"):
        SimulatedLatency(ActionQueue(), latency_steps=-1)
