"""The bodies a worker holds at once are bounded: many large uploads, slow or not,
cannot fill its disk."""

from __future__ import annotations

import asyncio
import typing as t

import pytest

from iotsupport.front.body import BodyBudget
from iotsupport.front.body import Limit
from iotsupport.front.body import Refused
from iotsupport.front.body import read_body


def chunks(*parts: bytes) -> t.Callable[[], t.Awaitable[dict[str, t.Any]]]:
    pending = list(parts)

    async def receive() -> dict[str, t.Any]:
        chunk = pending.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(pending)}

    return receive


def test_a_body_past_the_budget_is_refused_and_gives_back_what_it_held() -> None:
    budget = BodyBudget(max_bytes=100)
    limit = Limit(1000, "MAX_REQUEST_BYTES")
    first = asyncio.run(read_body(chunks(b"a" * 60), None, limit, 5, budget))
    assert budget.held == 60
    with pytest.raises(Refused) as refused:
        asyncio.run(read_body(chunks(b"b" * 30, b"c" * 30), None, limit, 5, budget))
    assert refused.value.status == 503 and refused.value.code == "server_busy"
    assert budget.held == 60  # the refused body's 30 bytes went back
    budget.give_back(60)  # the first request was answered
    first.close()
    second = asyncio.run(read_body(chunks(b"b" * 30, b"c" * 30), None, limit, 5, budget))
    assert second.read() == b"b" * 30 + b"c" * 30 and budget.held == 60
    second.close()
