"""Every wall-clock value the agent reads is, in replay, the value it read when recording."""

from __future__ import annotations

import json

import pytest
from conftest import run_python

# A uuid7 as CPython 3.14 (and pydantic-ai) make it: 10 random bytes in a new millisecond, 4
# within the same one — so what is drawn depends on where millisecond boundaries fall.
UUID7 = """
import os, time, uuid
_last_ms, _last_counter = None, 0
def uuid7():
    global _last_ms, _last_counter
    ms = time.time_ns() // 1_000_000
    if _last_ms is None or ms > _last_ms:
        rand = int.from_bytes(os.urandom(10), "big")
        counter, tail = (rand >> 32) & 0x1FF_FFFF_FFFF, rand & 0xFFFF_FFFF
    else:
        ms, counter = _last_ms, _last_counter + 1
        tail = int.from_bytes(os.urandom(4), "big")
    _last_ms, _last_counter = ms, counter
    value = (ms & 0xFFFF_FFFF_FFFF) << 80 | (counter >> 30 & 0xFFF) << 64 | (counter & 0x3FFF_FFFF) << 32 | tail
    return uuid.UUID(int=value | 0x0000_0000_0000_7000_8000_0000_0000_0000)
"""

AGENT = (
    UUID7
    + """
import asyncio, datetime, json, threading
from time import time as bound_time  # bound before AgentTrace starts: covered too
import agenttrace
agenttrace.init()
history = []

def point(label):
    history.append({"role": label, "at": datetime.datetime.now(datetime.timezone.utc).isoformat()})
    print(label, datetime.datetime.now().isoformat(), datetime.datetime.utcnow().isoformat(),
          time.time_ns(), bound_time(), datetime.date.today(), uuid7(), uuid.uuid1(),
          time.strftime("%Y-%m-%d %H:%M:%S"), flush=True)

point("start")
import decimal, email.utils, fractions  # imports between reads take real time
print(email.utils.formatdate(), flush=True)
time.sleep(0.05)
point("after sleep")
print([str(uuid7()) for _ in range(30)], flush=True)  # many in one millisecond, some across
async def main():
    async def task(n):
        await asyncio.sleep(0.01 * (3 - n))  # finish in the opposite order of their start
        point(f"task{n}")
    await asyncio.gather(*(task(n) for n in range(3)))
asyncio.run(main())
worker = threading.Thread(target=point, args=("thread",))
worker.start()
worker.join()
print(json.dumps(history))
"""
)


@pytest.mark.parametrize("attempt", range(3))
def test_clock_values_uuid7_uuid1_and_message_timestamps_replay_identically(tmp_path, attempt):
    recorded = run_python(AGENT, cwd=tmp_path)
    assert recorded.returncode == 0, recorded.stderr
    document = json.loads((tmp_path / ".agenttrace" / "last.json").read_text())
    clock = [e for e in document["events"] if e["kind"] == "clock"]
    assert clock and sum(len(v) for v in clock[0]["flows"].values()) >= 40  # reads recorded
    replayed = run_python(
        AGENT,
        cwd=tmp_path,
        env={
            "AGENTTRACE_MODE": "replay",
            "AGENTTRACE_GOVERNANCE_LEVEL": "governance",
            "AGENTTRACE_REPLAY_EVENTS_FILE": ".agenttrace/last.json",
        },
    )
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout == recorded.stdout
    assert "violation" not in replayed.stderr
