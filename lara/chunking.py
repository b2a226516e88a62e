"""Which action runs at each control step, from the action chunks a policy returns.

A policy answers an observation with a chunk of T actions; action i of a chunk computed on the observation
taken at step s is meant for step s + i. `step` counts the actions executed so far in the episode (a step
on which the arm holds is not one: the world waits with it). `ActionQueue` files each chunk's predictions
under the steps they are meant for, so a chunk that arrives after d more actions were executed contributes
its actions d, d+1, ... and no action is repeated or skipped. One queue serves three strategies:

- synchronous (`prefetch_steps` 0): the next chunk is asked for when the queue is empty; the arm holds
  until it arrives, then runs its first `execute_steps` actions (openpi's action-chunk broker);
- prefetch (`prefetch_steps` P > 0): the next chunk is asked for while P actions remain, on the newest
  observation, and replaces the not-yet-executed tail when it arrives (LeRobot's asynchronous inference,
  "latest only"): with P at least the reply's latency in steps, the arm never waits;
- temporal ensembling (`ensemble_decay`, with P > 0 so that chunks overlap): every chunk's predictions are
  kept, and the action for a step is their weighted average with ACT's weights w_i = exp(-decay * i),
  i = 0 the OLDEST prediction (ACT, Zhao et al. 2023, Algorithm 2 and its `imitate_episodes.py`; LeRobot's
  `ACTTemporalEnsembler`; SimplerEnv's `ActionEnsembler`): decay > 0 favours older predictions (ACT: 0.01),
  0 weighs all alike, < 0 favours newer ones. P = execute_steps - 1 asks every step, as ACT.

The ROS node drives a queue with a real policy server and wall-clock replies (`real_robot/ros_node.py`); the LIBERO
and SIMPLER harnesses drive one through `SimulatedLatency`, whose clock is the env step (`benchmarks/execution.py`).
Both outer folders need it, so it lives in the core. Pure Python + numpy.
"""

from __future__ import annotations

from typing import Optional

import numpy as np


class ActionQueue:
    """Predicted actions by control step: chunks go in with `add`, one action per executed step comes out of `pop`."""

    def __init__(self, execute_steps: Optional[int] = None, ensemble_decay: Optional[float] = None) -> None:
        """`execute_steps`: how many actions of each chunk, counted from its observation, may run (None: all);
        `ensemble_decay`: None replaces the tail with each new chunk, a number averages overlapping chunks."""
        if execute_steps is not None and execute_steps < 1:
            raise ValueError(f"execute_steps must be at least 1 (or None: whole chunks), got {execute_steps}")
        if ensemble_decay is not None and not np.isfinite(ensemble_decay):
            raise ValueError(f"ensemble_decay must be a finite number, got {ensemble_decay}")
        self.execute_steps = execute_steps
        self.ensemble_decay = ensemble_decay
        self.step = 0  # actions executed so far = the step the next `pop` is for
        self.predictions: dict[int, list[np.ndarray]] = {}  # step -> its predictions, oldest chunk first

    @property
    def remaining(self) -> int:
        """Actions ready to run, from the current step on (the predicted steps are always contiguous)."""
        return len(self.predictions)

    def due(self, prefetch_steps: int) -> bool:
        """Whether to ask for the next chunk now: at most `prefetch_steps` actions remain (the caller keeps one
        request in flight at a time, so chunks arrive in the order of their observations)."""
        return self.remaining <= prefetch_steps

    def add(self, chunk, observation_step: int) -> int:
        """File a chunk [T, A] computed on the observation taken at `observation_step`. Returns how many of its
        actions are still ahead; 0 when every one it may run was due while it was computed (it is dropped and
        the queue kept as it was)."""
        chunk = np.asarray(chunk, dtype=np.float64)
        if chunk.ndim != 2 or len(chunk) == 0:
            raise ValueError(f"expected a chunk of shape [T, A] with T >= 1, got {list(chunk.shape)}")
        if observation_step > self.step:
            raise ValueError(f"a chunk from step {observation_step} cannot be added at step {self.step}: "
                             "observations are taken before the actions they lead to")
        horizon = len(chunk) if self.execute_steps is None else min(len(chunk), self.execute_steps)
        executed = self.step - observation_step  # actions run while the chunk was being computed
        if executed >= horizon:
            return 0
        if self.ensemble_decay is None:
            self.predictions.clear()  # the newer prediction replaces the not-yet-executed tail
        for i in range(executed, horizon):
            self.predictions.setdefault(observation_step + i, []).append(chunk[i])
        return horizon - executed

    def pop(self) -> Optional[np.ndarray]:
        """The action for the current step, advancing it; None when no chunk predicts it (the arm holds and the
        step does not advance)."""
        predictions = self.predictions.pop(self.step, None)
        if predictions is None:
            return None
        self.step += 1
        if len(predictions) == 1:
            return predictions[0].copy()
        logits = -self.ensemble_decay * np.arange(len(predictions))  # i = 0: the oldest prediction
        weights = np.exp(logits - logits.max())  # = exp(-decay * i) up to the normalisation below
        return (weights / weights.sum()) @ np.stack(predictions)  # (A,)

    def clear(self) -> None:
        """Forget every prediction (a lost server, a pause); the step count goes on."""
        self.predictions.clear()

    def reset(self) -> None:
        """A new episode: no predictions, step 0."""
        self.predictions.clear()
        self.step = 0


class SimulatedLatency:
    """An `ActionQueue` driven in a simulator whose clock is the env step: a chunk asked for at env step t is
    computed on that step's observation and becomes available at env step t + `latency_steps` (0: at once, a
    plain rollout). One request is out at a time; the arm holds (`next_action` returns None) on the steps where
    the queue has nothing, as a robot waiting for its server does, and those steps count in the budget.

        schedule = SimulatedLatency(ActionQueue(execute_steps=8), prefetch_steps=2, latency_steps=2)
        while ...:
            if schedule.wants_chunk():
                schedule.submit(policy.act(obs))
            action = schedule.next_action()            # None: hold this step
    """

    def __init__(self, queue: ActionQueue, prefetch_steps: int = 0, latency_steps: int = 0) -> None:
        if prefetch_steps < 0 or latency_steps < 0:
            raise ValueError(f"prefetch_steps and latency_steps must be >= 0, got {prefetch_steps}, {latency_steps}")
        self.queue, self.prefetch_steps, self.latency_steps = queue, prefetch_steps, latency_steps
        self.env_step = 0
        self.pending: Optional[tuple[int, int, np.ndarray]] = None  # (ready at env step, observation step, chunk)
        self.chunks = 0  # requests sent
        self.holds = 0  # env steps without an action

    def wants_chunk(self) -> bool:
        """Whether to ask the policy for a chunk on this env step's observation."""
        self._deliver()
        return self.pending is None and self.queue.due(self.prefetch_steps)

    def submit(self, chunk) -> None:
        """The chunk the policy computed on this env step's observation; it arrives `latency_steps` later."""
        self.pending = (self.env_step + self.latency_steps, self.queue.step, np.asarray(chunk, dtype=np.float64))
        self.chunks += 1

    def next_action(self) -> Optional[np.ndarray]:
        """The action for this env step (None: hold), then the clock moves to the next env step."""
        self._deliver()
        action = self.queue.pop()
        self.holds += action is None
        self.env_step += 1
        return action

    def _deliver(self) -> None:
        if self.pending is not None and self.pending[0] <= self.env_step:
            _, observation_step, chunk = self.pending
            self.pending = None
            self.queue.add(chunk, observation_step)
