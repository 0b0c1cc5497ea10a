"""The replica's compute lane (no Ray): merging what waits, and holding for work on its way."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

from multi_task_kobart.serving.deployments import ComputeLane


def _recording_lane(**kwargs) -> tuple[ComputeLane, list[list[int]]]:
    calls: list[list[int]] = []

    def double(jobs: list[int]) -> list[int]:
        calls.append(list(jobs))
        time.sleep(0.05)  # a compute step long enough for more work to arrive meanwhile
        return [2 * job for job in jobs]

    return ComputeLane(double, ThreadPoolExecutor(max_workers=1), max_jobs=8, **kwargs), calls


def test_requests_that_arrive_while_the_thread_computes_run_together_in_order():
    lane, calls = _recording_lane()

    async def scenario() -> list[list[int]]:
        first = asyncio.ensure_future(lane.submit([1]))
        await asyncio.sleep(0.01)  # the first batch is computing now
        rest = [asyncio.ensure_future(lane.submit([n])) for n in (2, 3, 4)]
        return await asyncio.gather(first, *rest)

    assert asyncio.run(scenario()) == [[2], [4], [6], [8]]
    assert calls == [[1], [2, 3, 4]]  # one batch for everything that waited


def test_a_batch_waits_for_work_on_its_way_and_not_longer_than_allowed():
    """The colocated replica's hold: decode waits while encodes are in flight, so a wave decodes once."""
    in_flight = {"count": 2}  # requests 2 and 3 were encoded and are on their way back
    lane, calls = _recording_lane(hold=lambda: in_flight["count"] > 0, max_hold_s=2.0)

    async def arrive(n: int) -> list[int]:
        await asyncio.sleep(0.03 * (n - 1))
        if n > 1:
            in_flight["count"] -= 1  # what the colocated replica's decode() does on arrival
        return await lane.submit([n])

    async def wave() -> list[list[int]]:
        return await asyncio.gather(*(arrive(n) for n in (1, 2, 3)))

    assert asyncio.run(wave()) == [[2], [4], [6]]
    assert calls == [[1, 2, 3]]  # without the hold, request 1 would start alone

    # Nothing on its way: no wait. Something that never comes: at most max_hold_s.
    quick, quick_calls = _recording_lane(hold=lambda: False, max_hold_s=2.0)
    started = time.monotonic()
    asyncio.run(quick.submit([5]))
    assert time.monotonic() - started < 0.5 and quick_calls == [[5]]
    stuck, _ = _recording_lane(hold=lambda: True, max_hold_s=0.2)
    started = time.monotonic()
    assert asyncio.run(stuck.submit([6])) == [12]
    assert 0.2 <= time.monotonic() - started < 1.5
