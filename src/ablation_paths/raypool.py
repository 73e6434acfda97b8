"""One Ray actor pool for every engine that spreads work over Ray (``explain`` and ``bench``).

:func:`run_pool` starts one actor per slot (per GPU when the cluster has GPUs, else per CPU),
puts the actor's constructor arguments (the model, the settings) once into Ray's object store,
and streams tasks through the actors: two in flight per actor, results handed to the driver's
``finish`` callback as they finish (``ray.wait``), so the driver alone writes the outputs.

Failures:

* an actor whose process dies is restarted by Ray (``max_restarts``) and its task retried
  (``max_task_retries``);
* an actor that is still dead after its restarts is dropped; its tasks go once more to a
  surviving actor (``resubmit``), and are recorded as errors after that;
* an exception raised inside a task (the worker's own code) is recorded as an error;
* every actor dead: :class:`RuntimeError`.

Ctrl-C (``KeyboardInterrupt``, also one raised by ``finish``) cancels the tasks in flight and
propagates; a Ray instance started here is shut down in every case.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ablation_paths._optional import require

__all__ = ["PoolOptions", "ray_session", "run_pool", "slot_plan"]

T = TypeVar("T")

#: Tasks kept in flight per actor: one runs, one waits, so no actor idles while results travel.
IN_FLIGHT_PER_ACTOR = 2


@dataclass(frozen=True)
class PoolOptions:
    """Where and how to run a pool.

    Attributes:
        address: Ray cluster address (``None``: the instance already started in this process,
            else a new local one).
        workers: actors (``None``: one per GPU when the cluster has GPUs, else one per CPU).
        max_restarts: Ray restarts of an actor whose process died.
        max_task_retries: Ray retries of a task whose actor died while running it.
        resubmit: times a task whose actor died for good is given to another actor.
    """

    address: str | None = None
    workers: int | None = None
    max_restarts: int = 2
    max_task_retries: int = 2
    resubmit: int = 1

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        for name in ("max_restarts", "max_task_retries", "resubmit"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


def _ray() -> Any:
    return require("ray", extra="ray", purpose="the Ray engine (--engine ray)")


@contextlib.contextmanager
def ray_session(address: str | None = None, workers: int | None = None) -> Iterator[Any]:
    """The ``ray`` module, initialised: an instance already started in this process is used as
    it is; otherwise one is started (at ``address``, or locally with ``workers`` CPUs) and shut
    down on exit."""
    ray = _ray()
    started_here = False
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=workers or None, include_dashboard=False, log_to_driver=False)
        started_here = True
    try:
        yield ray
    finally:
        if started_here:
            ray.shutdown()


def slot_plan(resources: dict[str, float], workers: int | None, tasks: int) -> tuple[int, int]:
    """``(actors, gpus_per_actor)``: one actor per GPU when there are GPUs, else per CPU (or
    ``workers``), never more than there are tasks nor fewer than one."""
    gpus = int(resources.get("GPU", 0.0))
    cpus = int(resources.get("CPU", 1.0))
    n_actors = max(1, min(workers or (gpus if gpus else cpus), tasks))
    return n_actors, 1 if gpus else 0


class _PoolActor:
    """The Ray actor: builds ``factory(*args)`` once (args come from the object store) with
    ``threads`` torch threads, then runs its ``method`` on each task's arguments."""

    def __init__(self, factory: Callable[..., Any], threads: int | None, *args: Any) -> None:
        if threads:
            import torch

            torch.set_num_threads(threads)
        self.target = factory(*args)

    def call(self, method: str, *args: Any) -> Any:
        return getattr(self.target, method)(*args)


@dataclass
class _Task(Generic[T]):
    item: T
    tries: int = 0


def run_pool(
    factory: Callable[..., Any],
    shared: Sequence[Any],
    method: str,
    items: Sequence[T],
    task_args: Callable[[T], tuple[Any, ...]],
    finish: Callable[[T, Any, str | None], None],
    options: PoolOptions | None = None,
) -> None:
    """Run ``factory(*shared).method(*task_args(item))`` for every item on a pool of Ray actors.

    Args:
        factory: a picklable class or function that builds the per-actor worker.
        shared: its arguments, each put once into Ray's object store (the model, the settings).
        method: the worker's method to call per item.
        items: the work; ``task_args(item)`` are the arguments of one call (shipped per task).
        finish: called in the driver as ``finish(item, value, None)`` when a call returns, or
            ``finish(item, None, message)`` when it failed for good; items finish in any order.
        options: address, workers, restarts and retries (:class:`PoolOptions`).
    """
    opts = options or PoolOptions()
    if not items:
        return
    with ray_session(opts.address, opts.workers) as ray:
        resources = ray.cluster_resources()
        n_actors, gpus = slot_plan(resources, opts.workers, len(items))
        threads = None if gpus else max(1, int(resources.get("CPU", 1.0)) // n_actors)
        refs = [ray.put(value) for value in shared]  # once: every actor reads them from there
        actor_cls = ray.remote(
            num_cpus=1,
            num_gpus=gpus,
            max_restarts=opts.max_restarts,
            max_task_retries=opts.max_task_retries,
        )(_PoolActor)
        actors = [actor_cls.remote(factory, threads, *refs) for _ in range(n_actors)]
        try:
            _dispatch(ray, actors, method, items, task_args, finish, opts.resubmit)
        finally:
            for actor in actors:
                with contextlib.suppress(Exception):
                    ray.kill(actor, no_restart=True)


def _dispatch(
    ray: Any,
    actors: list[Any],
    method: str,
    items: Sequence[T],
    task_args: Callable[[T], tuple[Any, ...]],
    finish: Callable[[T, Any, str | None], None],
    resubmit: int,
) -> None:
    """The driver loop of :func:`run_pool`: keep every live actor busy, hand finished results
    to ``finish``, drop dead actors and give their tasks to the others."""
    from ray import exceptions
    from ray.exceptions import RayActorError, RayTaskError

    # a restarting actor (Ray >= 2.2x) is not dead: its task is given out again
    unavailable = getattr(exceptions, "ActorUnavailableError", ())

    queue: deque[_Task[T]] = deque(_Task(item) for item in items)
    alive = list(actors)
    in_flight: dict[Any, tuple[Any, _Task[T]]] = {}

    def submit(actor: Any) -> None:
        task = queue.popleft()
        task.tries += 1
        in_flight[actor.call.remote(method, *task_args(task.item))] = (actor, task)

    def fill() -> None:
        load = {id(a): 0 for a in alive}
        for actor, _ in in_flight.values():
            if id(actor) in load:
                load[id(actor)] += 1
        for actor in alive:
            while queue and load[id(actor)] < IN_FLIGHT_PER_ACTOR:
                submit(actor)
                load[id(actor)] += 1

    try:
        fill()
        while in_flight:
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            actor, task = in_flight.pop(ready[0])
            try:
                value = ray.get(ready[0])
            except RayActorError as exc:  # restarts and retries exhausted, or unreachable
                if not isinstance(exc, unavailable):  # dead for good: drop the actor
                    alive = [a for a in alive if a is not actor]
                if task.tries <= resubmit and alive:
                    queue.appendleft(task)
                else:
                    finish(task.item, None, f"{type(exc).__name__}: {exc}")
                if not alive and queue:
                    raise RuntimeError(f"every Ray actor died; last error: {exc}") from exc
            except RayTaskError as exc:  # the worker's own code raised
                cause = getattr(exc, "cause", None) or exc
                finish(task.item, None, f"{type(cause).__name__}: {cause}")
            else:
                finish(task.item, value, None)
            fill()
    except KeyboardInterrupt:
        for ref in in_flight:
            with contextlib.suppress(Exception):
                ray.cancel(ref)
        raise
