"""``agenttrace.tool``: function boundaries recorded as ``tool`` events and served in replay
without running the body — a real sqlite3 database, every kind of function, exact values."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import decimal
import enum
import json
import logging
import sqlite3
import uuid
from collections import namedtuple
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydantic
import pytest
import requests
from conftest import record_in_process, start_replay

import agenttrace
from agenttrace.capture import values


@pytest.fixture(autouse=True)
def no_session_left() -> Iterator[None]:
    agenttrace.shutdown()
    yield
    agenttrace.shutdown()


def record(tmp_path: Path, agent: Any) -> Any:
    return record_in_process(tmp_path, agent)


def replay(tmp_path: Path, agent: Any) -> Any:
    session = start_replay(tmp_path)
    result = agent()
    violations, unplayed = session.violations, session.unplayed()
    agenttrace.shutdown()
    assert violations == [] and unplayed == [], (violations, unplayed)
    return result


def tool_events(path: Path) -> list[dict[str, Any]]:
    return [e for e in json.loads(path.read_text())["events"] if e["kind"] == "tool"]


# -- a real database behind a tool ----------------------------------------------------------------


def test_a_sqlite_database_behind_a_tool_replays_without_the_database(tmp_path):
    db_path = tmp_path / "shop.db"
    with sqlite3.connect(db_path) as db:
        db.execute("create table orders (id integer primary key, item text, price text)")
        db.executemany(
            "insert into orders (item, price) values (?, ?)", [("tea", "3.50"), ("pie", "4.25")]
        )

    def agent() -> list[Any]:
        connection = sqlite3.connect(db_path)

        @agenttrace.tool(name="db.query")
        def query(sql: str, *params: Any) -> list[tuple]:
            return connection.execute(sql, params).fetchall()

        # a third-party callable, wrapped where it is used
        total = agenttrace.tool(
            lambda: connection.execute("select count(*) from orders").fetchone()[0],
            name="db.count",
        )
        rows = query("select id, item, price from orders where price > ?", "4")
        out = [rows, total(), query("select item from orders order by id")]
        connection.close()
        return out

    recorded = record(tmp_path, agent)
    assert recorded == [[(2, "pie", "4.25")], 2, [("tea",), ("pie",)]]
    events = tool_events(tmp_path / "last.json")
    assert [e["name"] for e in events] == ["db.query", "db.count", "db.query"]
    assert events[0]["args"] == {
        "sql": "select id, item, price from orders where price > ?",
        "params": {"$tuple": ["4"]},
    }
    assert events[0]["result"] == [{"$tuple": [2, "pie", "4.25"]}]

    db_path.unlink()  # replay never opens it: the bodies do not run
    (tmp_path / "shop.db").write_bytes(b"not a database")  # and would fail if they did
    for _ in range(3):
        assert replay(tmp_path, agent) == recorded


# -- every kind of function, every kind of value ----------------------------------------------------


class Color(enum.Enum):
    RED = "red"


@dataclasses.dataclass(frozen=True)
class Order:
    id: int
    placed: dt.datetime
    total: decimal.Decimal
    tags: frozenset[str]


class Customer(pydantic.BaseModel):
    name: str
    since: dt.date
    orders: list[Order] = []


Point = namedtuple("Point", "x y")

VALUES = [
    None,
    True,
    3,
    2.5,
    float("inf"),
    "text",
    [1, [2]],
    {"a": {"b": 1}},
    {1: "int key", "$x": "a key that looks like a tag"},
    (1, "two", (3,)),
    b"\x00\xffbytes",
    bytearray(b"ba"),
    {3, 1, 2},
    frozenset({"f"}),
    dt.datetime(2026, 12, 1, 23, 59, 1, 5, tzinfo=dt.timezone.utc),
    dt.date(2026, 1, 2),
    dt.time(10, 30),
    dt.timedelta(days=1, seconds=2, microseconds=3),
    decimal.Decimal("1.10"),
    uuid.UUID(int=7),
    Color.RED,
    Point(1, 2),
    Order(1, dt.datetime(2026, 1, 1, 12), decimal.Decimal("9.99"), frozenset({"gift"})),
    Customer(
        name="Ada",
        since=dt.date(2020, 1, 1),
        orders=[Order(2, dt.datetime(2026, 2, 2), decimal.Decimal("1"), frozenset())],
    ),
]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_values_round_trip_exactly(value):
    encoded = values.encode(value)
    decoded = values.decode(json.loads(json.dumps(encoded)))
    assert decoded == value and type(decoded) is type(value)
    if isinstance(value, Customer):
        assert type(decoded.orders[0]) is Order


def test_decoding_never_imports_or_runs_code():
    with pytest.raises(values.UnencodableValue, match="no such class is loaded"):
        values.decode({"$dataclass": "not_a_module_anyone_has:Thing", "fields": {}})


class Money:
    def __init__(self, cents: int) -> None:
        self.cents = cents

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Money) and other.cents == self.cents


@agenttrace.tool
def plain(x: int, *, scale: int = 1) -> dict:
    return {"x": x * scale, "when": dt.date(2026, 1, 1), "id": uuid.uuid4()}


@agenttrace.tool(name="lookup")
async def coroutine(order_id: str) -> Order:
    await asyncio.sleep(0)
    return Order(int(order_id), dt.datetime(2026, 3, 3), decimal.Decimal("2.50"), frozenset({"x"}))


@agenttrace.tool
def generator(n: int):
    for i in range(n):
        yield (i, str(i))
    return "done"


@agenttrace.tool
async def async_generator(n: int):
    for i in range(n):
        yield {"i": i}


@agenttrace.tool
def failing(reason: str) -> None:
    raise LookupError(f"no such order: {reason}")


@agenttrace.tool(encode=lambda m: m.cents, decode=Money)
def price() -> Money:
    return Money(1234)


class Shop:
    @agenttrace.tool
    def stock(self, item: str) -> int:
        return len(item)


def every_kind() -> list[Any]:
    out: list[Any] = [plain(2, scale=3), asyncio.run(coroutine("5"))]
    gen = generator(3)
    out.append([*gen])
    out.append(asyncio.run(_collect(async_generator(2))))
    try:
        failing("A-1")
    except LookupError as exc:
        out.append(("LookupError", str(exc)))
    out.append(price())
    out.append(Shop().stock("tea"))
    out.append(str(uuid.uuid4()))  # the agent's own entropy after the tools: still in step
    return out


async def _collect(agen: Any) -> list[Any]:
    return [item async for item in agen]


def test_every_kind_of_function_replays_without_running_the_body(tmp_path):
    recorded = record(tmp_path, every_kind)
    events = tool_events(tmp_path / "last.json")
    assert [e["name"] for e in events] == [
        "plain",
        "lookup",
        "generator",
        "async_generator",
        "failing",
        "price",
        "Shop.stock",
    ]
    assert events[0]["args"] == {"x": 2, "scale": 3}
    assert events[2]["items"] == [{"$tuple": [0, "0"]}, {"$tuple": [1, "1"]}, {"$tuple": [2, "2"]}]
    assert events[2]["result"] == "done"
    assert events[4]["error"]["type"] == "LookupError"
    assert events[5]["result"] == {"$custom": 1234}
    assert events[6]["args"] == {"item": "tea"}  # self is not an argument
    document = json.loads((tmp_path / "last.json").read_text())
    spans = {s["name"]: s for s in document["spans"]}
    assert spans["execute_tool lookup"]["kind"] == "INTERNAL"
    assert spans["execute_tool lookup"]["attributes"]["gen_ai.tool.name"] == "lookup"
    assert spans["execute_tool lookup"]["attributes"]["gen_ai.operation.name"] == "execute_tool"

    for _ in range(3):
        assert replay(tmp_path, every_kind) == recorded


# -- I/O inside a tool, divergences, unrecordable values ---------------------------------------------


def test_io_inside_a_tool_is_recorded_but_not_expected_in_replay(tmp_path, llm_server):
    @agenttrace.tool
    def weather(city: str) -> dict:
        uuid.uuid4()  # the body's own entropy is not the agent's
        return requests.get(llm_server.url + "/weather", params={"city": city}).json()

    def agent() -> list[Any]:
        return [weather("Oslo"), str(uuid.uuid4()), weather("Lima")]

    recorded = record(tmp_path, agent)
    document = json.loads((tmp_path / "last.json").read_text())
    tools = [e for e in document["events"] if e["kind"] == "tool"]
    http = [e for e in document["events"] if e["kind"] == "http"]
    assert len(http) == 2 and [e["in_tool"] for e in http] == [t["seq"] for t in tools]
    served = llm_server.request_count
    assert replay(tmp_path, agent) == recorded  # nothing unplayed, entropy still in step
    assert llm_server.request_count == served


def test_an_unrecorded_tool_call_is_a_divergence_naming_the_argument(tmp_path):
    record(tmp_path, lambda: plain(2))
    start_replay(tmp_path)
    with pytest.raises(agenttrace.ReplayDivergence) as caught:
        plain(3)
    message = str(caught.value)
    assert "unrecorded call of tool 'plain'" in message
    assert "args.x: recorded 2, now 3" in message, message


def test_an_unencodable_result_is_logged_and_returned_and_cannot_be_replayed(tmp_path, caplog):
    @agenttrace.tool(name="connect")
    def connect() -> Any:
        return sqlite3.connect(":memory:")

    with caplog.at_level(logging.ERROR, logger="agenttrace"):
        connection = record(tmp_path, connect)
    assert isinstance(connection, sqlite3.Connection)  # the agent got its value
    assert any(
        "tool 'connect' produced a Connection" in r.getMessage() and "encode=" in r.getMessage()
        for r in caplog.records
    )
    (event,) = tool_events(tmp_path / "last.json")
    assert "Connection" in event["unrecordable"]
    start_replay(tmp_path)
    with pytest.raises(agenttrace.ReplayDivergence, match="cannot replay #.* tool connect"):
        connect()


def test_relaxed_replay_runs_an_unrecorded_tool(tmp_path):
    record(tmp_path, lambda: plain(2))
    session = start_replay(tmp_path, level="relaxed")
    assert plain(5)["x"] == 5  # the body ran
    assert any("unrecorded call of tool 'plain'" in v for v in session.violations)
