"""``serve.prefork.GatheringModel``, the batching of a process that answers HTTP itself (SERVE_PREFORK=true
or SERVE_MME_POOL=true with batching; docs/engines.md, "Batching"), in one event loop with a stand-in
model: which requests form a batch, the delay, a timeout. ``test_batching.py`` runs it in real servers."""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from handlers.base import Request, Response
from handlers.errors import HandlerError
from serve.engine import EngineError
from serve.prefork import GatheringModel, RequestTimedOut
from serve.settings import Batching, Settings
from serve.worker import PreforkServing


@dataclass
class Model:
    """Answers each request with its body; records every call; ``times_out`` makes a batch take too long."""

    calls: list[list[bytes]] = field(default_factory=list)
    times_out: bool = False

    def invoke(self, request: Request) -> Response:
        self.calls.append([request.body])
        if request.body == b"bad":
            raise HandlerError("bad input", 400)
        return Response(request.body, "text/plain")

    def invoke_batch(self, requests: list[Request]) -> list[Response | Exception]:
        self.calls.append([r.body for r in requests])
        if self.times_out:
            raise RequestTimedOut  # what SIGALRM raises at the timeout
        return [HandlerError("bad input", 400) if r.body == b"bad" else Response(r.body, "text/plain")
                for r in requests]


def gathering(model: Model, max_size: int, delay_s: float = 0.0) -> tuple[GatheringModel, list[bool]]:
    stopped: list[bool] = []
    serving = PreforkServing(socket.socket(), Settings.from_env({}), 1, SimpleNamespace(value=0.0), None)
    serving.listener.close()
    gathered = GatheringModel(model, serving, lambda: stopped.append(True),  # type: ignore[arg-type]
                              Batching(max_size, delay_s, "SERVE_BATCH_MAX_SIZE"))
    return gathered, stopped


async def invoke_all(gathered: GatheringModel, bodies: list[bytes]) -> list[Any]:
    """Invoke with every body in the same turn of the loop; each answer's body, or the error's status."""
    answers = await asyncio.gather(*(gathered.invoke("m", Request(body, "text/plain")) for body in bodies),
                                   return_exceptions=True)
    return [a.status if isinstance(a, EngineError) else a.body for a in answers]


def test_a_request_alone_is_predicted_at_once_alone_even_with_a_delay() -> None:
    model = Model()
    gathered, _ = gathering(model, 8, delay_s=600.0)
    assert asyncio.run(invoke_all(gathered, [b"a"])) == [b"a"]
    assert model.calls == [[b"a"]]


def test_requests_of_one_turn_are_one_batch_up_to_the_size_in_order_and_a_bad_one_fails_alone() -> None:
    model = Model()
    gathered, _ = gathering(model, 3)
    answers = asyncio.run(invoke_all(gathered, [b"a", b"bad", b"c", b"d", b"e"]))
    assert answers == [b"a", 400, b"c", b"d", b"e"]
    assert model.calls == [[b"a", b"bad", b"c"], [b"d", b"e"]]


def test_a_partial_batch_waits_the_delay_for_requests_of_later_turns() -> None:
    model = Model()
    gathered, _ = gathering(model, 4, delay_s=0.2)

    async def scenario() -> list[Any]:
        first = asyncio.ensure_future(invoke_all(gathered, [b"a", b"b"]))
        await asyncio.sleep(0.01)  # a later turn, well inside the delay
        later = await invoke_all(gathered, [b"c"])
        return [*(await first), *later]

    assert asyncio.run(scenario()) == [b"a", b"b", b"c"]
    assert model.calls == [[b"a", b"b", b"c"]]


def test_a_full_batch_does_not_wait_the_delay() -> None:
    model = Model()
    gathered, _ = gathering(model, 2, delay_s=600.0)
    assert asyncio.run(asyncio.wait_for(invoke_all(gathered, [b"a", b"b"]), 30)) == [b"a", b"b"]


def test_a_batch_past_the_timeout_answers_504_to_each_and_stops_the_process() -> None:
    model = Model(times_out=True)
    gathered, stopped = gathering(model, 4)
    assert asyncio.run(invoke_all(gathered, [b"a", b"b", b"c"])) == [504, 504, 504]
    assert stopped == [True]


@pytest.mark.parametrize("bodies", [[b"a", b"b"], [b"a"]])
def test_a_request_whose_client_left_is_not_predicted(bodies: list[bytes]) -> None:
    model = Model()
    gathered, _ = gathering(model, 4)

    async def scenario() -> list[Any]:
        gone = asyncio.ensure_future(gathered.invoke("m", Request(b"gone", "text/plain")))
        await asyncio.sleep(0)  # it waits for its batch
        gone.cancel()
        return await invoke_all(gathered, bodies)

    assert asyncio.run(scenario()) == bodies
    assert all(b"gone" not in call for call in model.calls)


def test_requests_that_keep_coming_one_per_turn_join_the_batch() -> None:
    """Requests on new connections are read one per turn (each accept takes one): the batch waits a
    turn more as long as each turn brought one, up to the batch size."""
    model = Model()
    gathered, _ = gathering(model, 3)

    async def one_per_turn() -> list[Any]:
        invoked = []
        for body in [b"a", b"b", b"c", b"d"]:
            invoked.append(asyncio.ensure_future(gathered.invoke("m", Request(body, "text/plain"))))
            await asyncio.sleep(0)
        return [answer.body for answer in await asyncio.gather(*invoked)]

    assert asyncio.run(one_per_turn()) == [b"a", b"b", b"c", b"d"]
    assert model.calls == [[b"a", b"b", b"c"], [b"d"]]

