"""Where demonstrations start: fresh placements by default, the benchmark's init states on request, and the
same kept episodes whatever the number of workers."""

import json
import random
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from lara.benchmarks.libero import generate
from lara.errors import InputError
from lara.benchmarks.libero.protocol import parse_init_states, placement_seed


def fake_chunk(job):
    """A stand-in for `rollout_chunk`: seeds = 1 mod 3 fail; finishes after a random delay (out of order)."""
    suite, task, starts = job
    time.sleep(random.uniform(0, 0.02))
    return {"meta": {"task_name": f"task{task}"},
            "records": [{**s, "success": s["placement_seed"] % 3 != 1, "steps": 1, "seconds": 0.0, "episode": None}
                        for s in starts]}


def test_kept_starts_do_not_depend_on_the_worker_count():
    starts = {task: generate.task_starts(None, task, seed=0, attempts=12) for task in (0, 1)}
    kept = {}
    for workers in (1, 2, 3):
        with ThreadPoolExecutor(workers) as pool:
            found = generate.roll_out(pool, "libero_object", starts, episodes=4, workers=workers, run_chunk=fake_chunk)
        for task, f in found.items():
            tried = [r["placement_seed"] for r in f["records"]]
            assert tried == [s["placement_seed"] for s in starts[task][:len(tried)]]  # a prefix, in order
        kept[workers] = {t: [r["placement_seed"] for r in generate.keep_first(f["records"], 4)[0]]
                         for t, f in found.items()}
    assert kept[1] == kept[2] == kept[3]
    assert kept[1][1] == [s for s in range(1009, 1009 + 12) if s % 3 != 1][:4]


def test_an_expert_that_always_succeeds_rolls_out_only_the_episodes_it_keeps():
    """No start is rolled out while the chunks in flight can still bring the missing successes, and a chunk is no
    larger than what its task lacks, shared over the workers: the demo's 50 episodes once waited for a third chunk
    of 25 on one worker (the other idle) to find their last success. Failures still get more starts."""
    def always(job):
        suite, task, starts = job
        time.sleep(random.uniform(0, 0.02))
        return {"meta": {"task_name": f"task{task}"},
                "records": [{**s, "success": True, "steps": 1, "seconds": 0.0, "episode": None} for s in starts]}

    starts = {task: generate.task_starts(None, task, seed=0, attempts=30) for task in (0, 1)}
    for workers in (1, 2, 3):
        with ThreadPoolExecutor(workers) as pool:
            found = generate.roll_out(pool, "libero_object", starts, episodes=10, workers=workers, run_chunk=always)
        assert [len(f["records"]) for f in found.values()] == [10, 10]
        with ThreadPoolExecutor(workers) as pool:  # a third of the starts fail: more chunks, the same prefix
            found = generate.roll_out(pool, "libero_object", starts, episodes=10, workers=workers, run_chunk=fake_chunk)
        assert [sum(r["success"] for r in f["records"]) for f in found.values()] == [10, 10]  # none rolled out for nothing


def test_the_last_successes_are_looked_for_in_small_chunks_over_both_workers():
    """The demo's case: 50 episodes, 2 workers, an expert that fails 2 of its first 50 starts. The starts it still
    needs go out a few at a time to whichever worker is free, not as one chunk of 25 to one worker."""
    sizes = []

    def two_fail(job):
        suite, task, starts = job
        sizes.append(len(starts))
        time.sleep(0.01 * len(starts))
        return {"meta": {"task_name": f"task{task}"},
                "records": [{**s, "success": s["placement_seed"] - 1009 not in (7, 31), "steps": 1, "seconds": 0.0,
                             "episode": None} for s in starts]}

    starts = {1: generate.task_starts(None, 1, seed=0, attempts=100)}
    with ThreadPoolExecutor(2) as pool:
        found = generate.roll_out(pool, "libero_object", starts, episodes=50, workers=2, run_chunk=two_fail)
    assert len(found[1]["records"]) == 52 and sum(sizes) == 52
    assert sizes[:2] == [25, 13] and max(sizes[2:]) <= 7  # after the first two, each at most half of what is missing


def test_starts_and_their_records():
    assert parse_init_states("fresh") is None and parse_init_states("25:50") == range(25, 50)
    for bad in ("5", "3:3", "a:b", "benchmark"):
        with pytest.raises(ValueError, match="'fresh' .* or 'A:B'"):
            parse_init_states(bad)
    assert [s["placement_seed"] for s in generate.task_starts(None, 2, seed=1, attempts=3)] == [
        100003 + 2018, 100003 + 2019, 100003 + 2020] == [placement_seed(1, 2, a) for a in range(3)]
    benchmark = generate.task_starts(range(25, 50), 2, seed=0, attempts=2)
    assert benchmark == [{"init_state_index": 25, "placement_seed": 2043}, {"init_state_index": 26, "placement_seed": 2044}]
    assert generate.init_state_record([{**s, "success": True} for s in benchmark], benchmark=True) == {
        "source": "benchmark", "indices": [25, 26], "seeds": [2043, 2044]}
    assert generate.init_state_record([], benchmark=True) == {"source": "benchmark", "indices": [], "seeds": []}


def test_init_states_flag_is_checked_before_any_rollout(tmp_path, capsys):
    for flag, message in (("7", "'fresh' (new placements, the default) or 'A:B'"),
                          ("40:60", "has 50 fixed init states per task")):
        with pytest.raises(InputError) as caught:
            generate.main(["--suite", "object", "--tasks", "1", "--init-states", flag,
                           "--out", str(tmp_path)])
        assert message in str(caught.value)
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_one_and_two_workers_keep_the_same_fresh_placements(tmp_path):
    summaries = []
    for workers in (1, 2):
        out = tmp_path / f"workers{workers}"
        assert generate.main(["--suite", "object", "--tasks", "1", "--episodes", "2", "--attempts", "3",
                              "--workers", str(workers), "--dry-run", "--no-progress", "--out", str(out)]) == 0
        summaries.append(json.loads((out / "generation.json").read_text()))
    one, two = (s["tasks"][0] for s in summaries)
    assert one["init_states"] == two["init_states"] and one["init_states"]["source"] == "fresh"
    assert one["init_states"]["seeds"] == [e["placement_seed"] for e in one["episodes"] if e["success"]][:2]
    assert set(one["init_states"]["seeds"]) <= {1009, 1010, 1011}  # task 1's seeds at --seed 0
    assert (one["attempts"], one["successes"]) == (two["attempts"], two["successes"])
    assert all("init_state_index" not in e for e in one["episodes"] + two["episodes"])
    assert summaries[1]["workers"] == 2 and summaries[0]["init_states"] == "fresh"


def test_progress_shows_rollouts_done_kept_rate_and_eta():
    import io
    import re

    from tqdm import tqdm

    starts = {task: generate.task_starts(None, task, seed=0, attempts=12) for task in (0, 1)}
    text = io.StringIO()
    with ThreadPoolExecutor(2) as pool, tqdm(total=24, file=text, mininterval=0, ascii=True) as bar:
        found = generate.roll_out(pool, "libero_object", starts, episodes=4, workers=2, bar=bar, run_chunk=fake_chunk)
    tried = sum(len(f["records"]) for f in found.values())
    last = text.getvalue().split("\r")[-1]
    assert f"{tried}/{tried}" in last and "kept=8/8" in last and "it/s" in last  # unneeded starts left the total
    assert any(re.search(r"<\d\d:\d\d", line) for line in text.getvalue().split("\r"))  # elapsed<remaining: the ETA


def test_threads_per_worker_reaches_the_generation_workers(tmp_path, monkeypatch):
    """docs/evaluate.md: every generated episode runs in a worker whose thread pools --threads-per-worker sets."""
    seen = []

    class Stop(Exception):
        pass

    def spawn_pool(workers, threads, initializer, initargs=()):
        seen.append((workers, threads))
        raise Stop

    monkeypatch.setattr(generate, "spawn_pool", spawn_pool)
    with pytest.raises(Stop):
        generate.main(["--suite", "object", "--tasks", "1", "--episodes", "1", "--workers", "2",
                       "--threads-per-worker", "3", "--out", str(tmp_path)])
    assert seen == [(2, 3)]
