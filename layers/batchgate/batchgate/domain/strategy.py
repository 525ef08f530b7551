"""Which capacity a job runs on, and why: `plan_launch`, the launch strategy engine.

One pure function: the batch's catalog entry, the job's priority and strategy preference, the measured
history of the batch per strategy, the EC2 capacity provider's free capacity and the engine's settings
in; a LaunchPlan out (strategy, capacity provider, task size, ordered fallbacks), with a short reason
naming the figures used and every input in `inputs`, so that a plan can be explained and replayed
without AWS. The policy is in docs/strategy.md; in short:

- the chain starts from the launch class's strategies in order; an allowed message preference goes
  first; "EC2" is dropped without an EC2 capacity provider, with no free slot for the task, or for a
  batch whose p95 run time is too long to hold an instance; Fargate Spot is dropped after a Spot
  interruption of the previous attempt; on-demand FARGATE is always in the chain;
- objective "latency" (interactive): EC2 first when it is in the chain, else on-demand FARGATE (as
  fast to start as Spot, and never interrupted);
- objective "balanced" (standard): EC2 first only for a short batch (p95 run below
  `short_run_seconds`) that starts faster on EC2 than on Fargate; else the class order without EC2 first;
- objective "cost" (bulk): Fargate Spot first unless its interruption rate is too high or the batch is
  too short; EC2 (an instance already paid for) next when short; else on-demand;
- a job of priority `high_priority` or more is planned for latency whatever its class;
- a schedule's slot (it must start on time) is planned for latency when its class is "balanced" (a
  "cost" class has said it would rather wait);
- on-demand FARGATE is the last fallback of every chain that does not start with it: nothing is tried
  after the strategy that always has capacity;
- WARM (a warm pool's slot) goes first, whatever the objective, for a batch that names a pool when the
  pool advertises a free slot for it and its p95 run is below the pool's `max_run_seconds`: it starts in
  about a second and its cost is already paid. Never after a WARM attempt ended without running (not
  picked up, pool task stopped), and never against an honoured message preference. The ECS chain
  stays behind it: an offer no worker claims goes to the next strategy at once.
"""

from collections.abc import Mapping
from typing import TYPE_CHECKING, NamedTuple

from batchgate.domain.catalog import BatchSpec
from batchgate.domain.jobs import LaunchPlan
from batchgate.domain.latency_sketch import SPOT_INTERRUPTION, HistorySummary
from batchgate.domain.pools import WarmSlots
from batchgate.domain.strategy_settings import (
    BALANCED,
    COST,
    DEFAULT_STRATEGY_SETTINGS,
    EC2,
    FARGATE,
    FARGATE_SPOT,
    LATENCY,
    WARM,
    StrategySettings,
)
from batchgate.domain.warm import WARM_STOP_CODES

if TYPE_CHECKING:
    # Only a dispatch with an EC2 capacity provider loads its adapter.
    from batchgate.adapters.ec2_capacity import CapacitySnapshot

ON_DEMAND = FARGATE
SHORT_NAMES = {EC2: "EC2", FARGATE: "Fargate", FARGATE_SPOT: "Spot", WARM: "warm"}


class _Figures(NamedTuple):
    """The numbers a decision rests on, each with where it came from."""

    run_p95: float
    run_source: str
    start_p50: dict[str, float]
    start_source: dict[str, str]
    slots: int | None
    interruption_rate: float | None


def plan_launch(
    spec: BatchSpec,
    *,
    preference: str | None = None,
    ec2_capacity_provider: str | None = None,
    priority: int = 0,
    history: Mapping[str, HistorySummary] | None = None,
    capacity: "CapacitySnapshot | None" = None,
    previous_stop_code: str | None = None,
    settings: StrategySettings = DEFAULT_STRATEGY_SETTINGS,
    warm: WarmSlots | None = None,
    scheduled: bool = False,
) -> LaunchPlan:
    """The plan for one attempt of one job. Pure: same inputs, same plan.

    `history` maps strategy -> summary of this batch (missing or thin: cold-start defaults);
    `capacity` is the EC2 capacity provider's free capacity (None: unknown, EC2 is tried and falls back
    on a capacity failure); `previous_stop_code` is the stop code of the job's previous attempt;
    `warm` is the free slots of the batch's pool (None: no pool, or its heartbeats unreadable).
    """
    history = history or {}
    launch_class = spec.launch_class
    objective = launch_class.objective
    notes: list[str] = []
    if priority >= settings.high_priority and objective != LATENCY:
        notes.append(f"priority {priority} plans for latency")
        objective = LATENCY
    if scheduled and objective == BALANCED:
        # A schedule's slot must start on time; a class whose objective is cost has said it would rather
        # wait (docs/schedules.md).
        notes.append("scheduled run plans for latency")
        objective = LATENCY

    order = list(launch_class.strategies)
    honoured = preference is not None and preference in launch_class.allowed_preferences
    if honoured and preference is not None:
        order = [preference, *[strategy for strategy in order if strategy != preference]]
    ec2_considered = bool(ec2_capacity_provider) and (
        EC2 in launch_class.strategies or (honoured and preference == EC2)
    )
    figures = _figures(spec, objective, history, capacity if ec2_considered else None, settings)

    # What may not be tried at all.
    if EC2 in order and not ec2_capacity_provider:
        order.remove(EC2)
        notes.append("no EC2 capacity provider configured")
    if EC2 in order and figures.slots == 0:
        order.remove(EC2)
        notes.append("no EC2 slot free")
    if EC2 in order and figures.run_p95 > settings.ec2_max_run_seconds:
        order.remove(EC2)
        notes.append(f"p95 run {_s(figures.run_p95)} too long for EC2")
    if FARGATE_SPOT in order and previous_stop_code == SPOT_INTERRUPTION:
        order.remove(FARGATE_SPOT)
        notes.append("previous attempt lost to a Spot interruption: on-demand")
    if ON_DEMAND not in order:
        order.append(ON_DEMAND)

    if honoured and preference in order:
        why = "message preference"
    else:
        order, why = _by_objective(order, objective, figures, settings)
        if preference is not None and not honoured:
            why += f"; {preference} preference not allowed for launch class {launch_class.name}"
    order = _on_demand_last(order)
    order, why = _warm_first(
        order,
        why,
        notes,
        _warm_refusal(spec, warm, figures.run_p95, previous_stop_code, honoured),
        warm if spec.pool else None,
    )
    chosen, fallbacks = order[0], tuple(order[1:])
    reason = _reason(
        class_name=launch_class.name,
        chosen=chosen,
        why=why,
        figures=figures,
        notes=notes,
        settings=settings,
        spec=spec,
        ec2_considered=ec2_considered,
        warm=warm,
    )
    capacity_provider = ec2_capacity_provider if chosen == EC2 and ec2_capacity_provider else chosen
    if chosen == WARM and warm is not None:
        capacity_provider = warm.pool
    return LaunchPlan(
        strategy=chosen,
        capacity_provider=capacity_provider,
        reason=reason,
        fallbacks=fallbacks,
        inputs=_inputs(
            spec=spec,
            objective=objective,
            preference=preference,
            priority=priority,
            previous_stop_code=previous_stop_code,
            history=history,
            capacity=capacity,
            figures=figures,
            warm=warm,
        ),
        cpu=spec.cpu,
        memory=spec.memory,
    )


def _figures(
    spec: BatchSpec,
    objective: str,
    history: Mapping[str, HistorySummary],
    capacity: "CapacitySnapshot | None",
    settings: StrategySettings,
) -> _Figures:
    trusted = {
        strategy: summary for strategy, summary in history.items() if summary.attempts >= settings.min_samples
    }
    # Run time hardly depends on where the task runs: the most-sampled strategy's p95 stands for all.
    with_runs = [summary for summary in trusted.values() if summary.run_p95 is not None]
    if with_runs:
        best = max(with_runs, key=lambda summary: summary.attempts)
        run_p95, run_source = float(best.run_p95 or 0.0), f"measured on {best.strategy}"
    elif spec.expected_run_seconds is not None:
        run_p95, run_source = float(spec.expected_run_seconds), "catalog expected_run_seconds"
    else:
        run_p95, run_source = settings.default_run_seconds(objective), f"{objective} default"
    start: dict[str, float] = {}
    source: dict[str, str] = {}
    for strategy in (EC2, FARGATE, FARGATE_SPOT, WARM):
        summary = trusted.get(strategy)
        if summary is not None and summary.start_p50 is not None:
            start[strategy], source[strategy] = summary.start_p50, "measured"
        else:
            start[strategy], source[strategy] = settings.default_start_seconds(strategy), "default"
    spot = trusted.get(FARGATE_SPOT)
    return _Figures(
        run_p95=run_p95,
        run_source=run_source,
        start_p50=start,
        start_source=source,
        slots=capacity.slots(spec.cpu, spec.memory) if capacity is not None else None,
        interruption_rate=spot.interruption_rate if spot is not None else None,
    )


def _warm_first(
    order: list[str], why: str, notes: list[str], refusal: str | None, warm: WarmSlots | None
) -> tuple[list[str], str]:
    """WARM ahead of the ECS chain when the pool takes the job (no `refusal`); the refusal noted."""
    if refusal is not None:
        notes.append(refusal)
        return order, why
    if warm is None:
        return order, why
    return [WARM, *order], f"warm slot free in pool {warm.pool}"


def _warm_refusal(
    spec: BatchSpec, warm: WarmSlots | None, run_p95: float, previous_stop_code: str | None, honoured: bool
) -> str | None:
    """Why a batch with a pool does not go warm this time (None: it does, or it has no pool)."""
    if spec.pool is None:
        return None
    if warm is None:
        return f"pool {spec.pool}: no heartbeat read"
    if previous_stop_code in WARM_STOP_CODES:
        return f"previous attempt ended {previous_stop_code}: not warm again"
    if honoured:
        return "message preference over the warm pool"
    if run_p95 >= warm.max_run_seconds:
        return f"p95 run {_s(run_p95)} too long for pool {warm.pool} (max {_s(warm.max_run_seconds)})"
    if warm.free_slots <= 0:
        return f"pool {warm.pool}: no free slot ({warm.tasks} task{'s' if warm.tasks != 1 else ''} up)"
    return None


def _on_demand_last(order: list[str]) -> list[str]:
    """On-demand Fargate ends every chain it does not start: it is the fallback that always has
    capacity, so every other strategy is tried before it and none after it."""
    if order[0] == ON_DEMAND:
        return order
    return [*[strategy for strategy in order if strategy != ON_DEMAND], ON_DEMAND]


def _first(order: list[str], strategy: str) -> list[str]:
    return [strategy, *[other for other in order if other != strategy]]


def _after_first_other(order: list[str], strategy: str) -> list[str]:
    """`strategy` kept as a fallback, behind the first strategy that is not it."""
    others = [other for other in order if other != strategy]
    return [*others[:1], strategy, *others[1:]]


def _by_objective(
    order: list[str], objective: str, figures: _Figures, settings: StrategySettings
) -> tuple[list[str], str]:
    ec2_start, fargate_start = figures.start_p50[EC2], figures.start_p50[FARGATE]
    short = figures.run_p95 < settings.short_run_seconds
    ec2_faster = ec2_start < fargate_start
    if objective == LATENCY:
        if EC2 in order:
            return _first(order, EC2), "fastest start"
        # Without EC2, on-demand Fargate starts as fast as Spot and is never interrupted.
        return _first(order, ON_DEMAND), "fastest start: on-demand, never interrupted"
    if EC2 in order and objective == BALANCED:
        if short and ec2_faster:
            return _first(order, EC2), "short run starts faster on warm EC2"
        order = _after_first_other(order, EC2)
    if FARGATE_SPOT in order:
        rate = figures.interruption_rate
        too_interrupted = rate is not None and rate > settings.spot_max_interruption_rate
        too_short = figures.run_p95 < settings.spot_min_run_seconds
        if too_interrupted or too_short:
            # Spot stays in the chain, behind on-demand.
            spot_last = [other for other in order if other != FARGATE_SPOT] + [FARGATE_SPOT]
            why = (
                f"Spot interruption rate {rate:.0%} too high"
                if too_interrupted and rate is not None
                else "too short for Spot"
            )
            return _ec2_for_cost(spot_last, objective, short, why)
        if objective == COST:
            return _first(order, FARGATE_SPOT), "cheapest: interruptible work on Spot"
    if objective == COST:
        return _ec2_for_cost(order, objective, short, "cheapest available")
    return order, "catalog default"


def _ec2_for_cost(order: list[str], objective: str, short: bool, why: str) -> tuple[list[str], str]:
    if objective == COST and EC2 in order and short:
        return _first(order, EC2), f"{why}; short run on an EC2 instance already paid for"
    return order, why


def _s(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 600 else f"{seconds / 60:.0f} min"


def _reason(
    *,
    class_name: str,
    chosen: str,
    why: str,
    figures: _Figures,
    notes: list[str],
    settings: StrategySettings,
    spec: BatchSpec,
    ec2_considered: bool,
    warm: WarmSlots | None = None,
) -> str:
    """E.g. "EC2 (launch class interactive, fastest start): p95 run 14 s, EC2 start p50 12 s vs
    Fargate 48 s, 3 slots free"."""
    parts = [
        f"p95 run {_s(figures.run_p95)}" + ("" if figures.run_source.startswith("measured") else " (est.)")
    ]
    starts = figures.start_p50
    if chosen == WARM and warm is not None:
        others = " / ".join(
            f"{SHORT_NAMES[other]} {_s(starts[other])}"
            for other in (EC2, FARGATE)
            if other != EC2 or ec2_considered
        )
        parts.append(f"warm start p50 {_s(starts[WARM])} vs {others}")
        parts.append(f"{warm.free_slots} warm slot{'s' if warm.free_slots != 1 else ''} free")
        parts.append("pool cost already paid")
        text = f"{chosen} (launch class {class_name}, {why}): {', '.join(parts)}"
        return text + ("; " + "; ".join(notes) if notes else "")
    if chosen == EC2 or ec2_considered:
        parts.append(f"EC2 start p50 {_s(starts[EC2])} vs Fargate {_s(starts[FARGATE])}")
    else:
        parts.append(f"{SHORT_NAMES.get(chosen, chosen)} start p50 {_s(starts.get(chosen, starts[FARGATE]))}")
    if figures.slots is not None:
        parts.append(f"{figures.slots} slot{'s' if figures.slots != 1 else ''} free")
    hourly = settings.hourly_usd(chosen, spec.cpu, spec.memory)
    if hourly is not None:
        parts.append(f"~${hourly:.4f}/h")
    text = f"{chosen} (launch class {class_name}, {why}): {', '.join(parts)}"
    if notes:
        text += "; " + "; ".join(notes)
    return text


def _inputs(
    *,
    spec: BatchSpec,
    objective: str,
    preference: str | None,
    priority: int,
    previous_stop_code: str | None,
    history: Mapping[str, HistorySummary],
    capacity: "CapacitySnapshot | None",
    figures: _Figures,
    warm: WarmSlots | None = None,
) -> dict[str, object]:
    """Everything the decision read, stored on the job: enough to replay it ("whatif")."""
    inputs: dict[str, object] = {"warm": warm.to_dict()} if warm is not None else {}
    return inputs | {
        "launch_class": spec.launch_class.name,
        "objective": objective,
        "preference": preference,
        "priority": priority,
        "previous_stop_code": previous_stop_code,
        "history": {strategy: summary.to_dict() for strategy, summary in sorted(history.items())},
        "capacity_slots": figures.slots,
        "capacity_instances": len(capacity.instances) if capacity is not None else None,
        "run_p95": round(figures.run_p95),
        "run_source": figures.run_source,
        "start_p50": {strategy: round(value) for strategy, value in figures.start_p50.items()},
        "start_source": dict(figures.start_source),
    }
