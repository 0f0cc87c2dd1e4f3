"""The whole pipeline in one process: the three stage workers and a gateway over one
bus (the in-process topology of ``ragline serve --bus memory``, or a single-process
Kafka deployment)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from ragline.core.ports import Bus
from ragline.service.gateway import Gateway
from ragline.service.workers import Topics, Worker, build_worker


class Pipeline:
    """The stage workers and a gateway over one bus, in this process."""

    def __init__(
        self,
        engine,
        bus: Bus,
        topics: Topics | None = None,
        *,
        stages: Sequence[str] = ("ingest", "retrieve", "generate"),
        concurrency: int = 8,
        timeout_s: float = 30.0,
        max_attempts: int = 5,
        backoff_s: float = 0.2,
    ) -> None:
        self.engine = engine
        self.bus = bus
        self.topics = topics or Topics()
        self.workers: dict[str, Worker] = {
            stage: build_worker(
                stage,
                engine,
                bus,
                self.topics,
                concurrency=concurrency,
                max_attempts=max_attempts,
                backoff_s=backoff_s,
                metrics=engine.metrics,
            )
            for stage in stages
        }
        self.gateway = Gateway(bus, self.topics, timeout_s=timeout_s, metrics=engine.metrics)
        self._tasks: list[asyncio.Task] = []
        engine.metrics.watch_lag(bus.lag)

    async def start(self) -> Pipeline:
        await self.gateway.start()
        self._tasks = [asyncio.create_task(w.run(), name=f"worker-{name}") for name, w in self.workers.items()]
        return self

    async def close(self, grace_s: float = 5.0) -> None:
        for worker in self.workers.values():
            worker.stop()
        if self._tasks:
            _, late = await asyncio.wait(self._tasks, timeout=grace_s + 1)
            for task in late:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.gateway.close()

    async def __aenter__(self) -> Pipeline:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
