"""The bus gateway hands each tenant only its own answers, whatever request id is reused."""

from __future__ import annotations

import asyncio

from ragline.adapters.buses.memory import MemoryBus
from ragline.core.models import Answer, new_query
from ragline.service.gateway import Gateway
from ragline.service.workers import KIND, Topics


async def _until(condition, timeout_s: float = 2.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.005)


async def test_an_answer_with_another_tenants_request_id_or_tenant_is_never_delivered():
    bus, topics = MemoryBus(), Topics()
    async with Gateway(bus, topics, timeout_s=5) as gateway:
        asked = asyncio.ensure_future(gateway.ask(new_query(text="q", tenant="alice", request_id="r1")))
        await _until(lambda: "alice/r1" in gateway._waiting)
        for key, tenant in ((b"mallory/r1", "mallory"), (b"alice/r1", "mallory")):
            forged = Answer(request_id="r1", tenant=tenant, text="stolen?", model="x")
            await bus.publish(topics.answers, forged.model_dump_json().encode(), key, {KIND: b"answer"})
        await _until(lambda: gateway.foreign >= 2)
        assert not asked.done()
        real = Answer(request_id="r1", tenant="alice", text="yours", model="x")
        await bus.publish(topics.answers, real.model_dump_json().encode(), b"alice/r1", {KIND: b"answer"})
        assert (await asyncio.wait_for(asked, 2)).text == "yours"


async def test_two_tenants_may_use_the_same_request_id_at_once():
    bus, topics = MemoryBus(), Topics()
    async with Gateway(bus, topics, timeout_s=5) as gateway:
        asks = {
            t: asyncio.ensure_future(gateway.ask(new_query(text="q", tenant=t, request_id="same"))) for t in ("a", "b")
        }
        await _until(lambda: {"a/same", "b/same"} <= set(gateway._waiting))
        for tenant in ("b", "a"):
            answer = Answer(request_id="same", tenant=tenant, text=f"for {tenant}", model="x")
            await bus.publish(
                topics.answers, answer.model_dump_json().encode(), f"{tenant}/same".encode(), {KIND: b"answer"}
            )
        assert {t: (await asyncio.wait_for(f, 2)).text for t, f in asks.items()} == {"a": "for a", "b": "for b"}
