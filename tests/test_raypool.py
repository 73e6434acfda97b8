"""The shared Ray pool: results streamed back, dead actors' tasks resubmitted or recorded."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from ablation_paths.raypool import PoolOptions, run_pool, slot_plan


def _worker_class() -> type:
    """A worker defined in a function, so Ray pickles it by value (tests/ is not importable
    in Ray's worker processes)."""

    class Scaler:
        def __init__(self, factor: int, crash_flag: str | None) -> None:
            self.factor = factor
            self.crash_flag = crash_flag
            self.pid = os.getpid()

        def scale(self, x: int) -> tuple[int, int]:
            if x < 0:
                raise ValueError(f"negative input {x}")
            if self.crash_flag and x == 3 and not os.path.exists(self.crash_flag):
                Path(self.crash_flag).touch()
                os._exit(1)  # the actor's process dies without a Python exception
            return x * self.factor, self.pid

    return Scaler


def _collect(
    items: list[int], shared: tuple[Any, ...], options: PoolOptions
) -> tuple[dict[int, int], dict[int, str], set[int]]:
    values: dict[int, int] = {}
    errors: dict[int, str] = {}
    pids: set[int] = set()

    def finish(item: int, value: Any, error: str | None) -> None:
        assert item not in values and item not in errors  # each item finishes once
        if value is None:
            errors[item] = error or ""
        else:
            values[item], pid = value
            pids.add(pid)

    run_pool(_worker_class(), shared, "scale", items, lambda x: (x,), finish, options)
    return values, errors, pids


def test_slot_plan() -> None:
    assert slot_plan({"CPU": 8.0}, None, 100) == (8, 0)
    assert slot_plan({"CPU": 8.0, "GPU": 2.0}, None, 100) == (2, 1)
    assert slot_plan({"CPU": 8.0}, 3, 100) == (3, 0)
    assert slot_plan({"CPU": 8.0}, None, 2) == (2, 0)  # never more actors than tasks
    assert slot_plan({}, None, 5) == (1, 0)
    with pytest.raises(ValueError, match="workers"):
        PoolOptions(workers=0)


def test_every_item_streams_back_from_two_actors(ray_two_workers: Any) -> None:
    items = list(range(8))
    values, errors, pids = _collect(items, (10, None), PoolOptions(workers=2))
    assert values == {x: 10 * x for x in items} and not errors
    assert len(pids) == 2  # one actor per slot, both used


def test_a_task_that_raises_is_recorded_as_an_error(ray_two_workers: Any) -> None:
    values, errors, _ = _collect([1, -2, 3], (2, None), PoolOptions(workers=2))
    assert values == {1: 2, 3: 6}
    assert list(errors) == [-2] and errors[-2].startswith("ValueError: negative input -2")


def test_dead_actor_without_restarts_gives_its_task_to_another(
    tmp_path: Path, ray_two_workers: Any
) -> None:
    opts = PoolOptions(workers=2, max_restarts=0, max_task_retries=0, resubmit=1)
    values, errors, _ = _collect(list(range(6)), (1, str(tmp_path / "flag")), opts)
    assert (tmp_path / "flag").exists()  # it did crash
    assert values == {x: x for x in range(6)} and not errors


def test_dead_actor_without_restarts_or_resubmits_is_an_error(
    tmp_path: Path, ray_two_workers: Any
) -> None:
    opts = PoolOptions(workers=2, max_restarts=0, max_task_retries=0, resubmit=0)
    values, errors, _ = _collect(list(range(6)), (1, str(tmp_path / "flag")), opts)
    assert 3 in errors and "Actor" in errors[3]
    assert set(values) | set(errors) == set(range(6))  # every item finished once
