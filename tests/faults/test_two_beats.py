"""Two beats started: the schedule is sent once, not twice; when the beat sending it is killed, the other takes over.

Both are real `celery -A oma beat` processes on the test database and a private broker. No worker runs, so every
message a beat sends stays in the broker's queue, where the test reads them: the `ops.heartbeat` entry runs every
second, and each message carries its send time (its expiry, set from the entry's expire_seconds).
"""

from __future__ import annotations

import itertools
import json
import time
from datetime import datetime, timedelta

import pytest
import redis

from oma.ops.models import BeatLease
from tests.faults.conftest import fast_schedule
from tests.fixtures_celery import wait_until

pytestmark = [pytest.mark.faults, pytest.mark.postgres, pytest.mark.redis]


EXPIRE = timedelta(seconds=1)  # fast_schedule: expire_seconds of a 1 s entry


def heartbeat_send_times(broker_url: str) -> list[datetime]:
    """When each queued `ops.heartbeat` message was sent, give or take the constant expire_seconds of the entry
    (the message's expiry is its send time plus that)."""
    client = redis.Redis.from_url(broker_url)
    times = []
    for raw in client.lrange("celery", 0, -1):
        headers = json.loads(raw)["headers"]
        if headers["task"] == "ops.heartbeat":
            times.append(datetime.fromisoformat(headers["expires"]) - EXPIRE)
    return sorted(times)


def holder_pid() -> int | None:
    holder = BeatLease.objects.filter(name="beat").values_list("holder", flat=True).first()
    return int(holder.split(":")[1]) if holder else None


def test_two_beats_send_each_entry_once_and_the_standby_takes_over_from_a_killed_one(
    transactional_db, broker, app_env, beat_factory
):
    fast_schedule(**{"ops.heartbeat": 1})
    env = {**app_env, "LOG_LEVEL": "INFO"}
    beats = [beat_factory(env=env), beat_factory(env=env)]  # started together
    wait_until(lambda: holder_pid() in {beat.pid for beat in beats}, timeout=60, interval=0.2,
               what="a beat to take the lease")
    first, second = beats if holder_pid() == beats[0].pid else beats[::-1]
    wait_until(lambda: "stands by" in second.log(), timeout=60, interval=0.2, what="the other beat to stand by")

    time.sleep(5)  # both beats running: the schedule must still go out once a second, not twice
    both_running = heartbeat_send_times(broker)
    assert holder_pid() == first.pid

    first.kill()  # SIGKILL: no lease release; the standby must wait for it to expire (OMA_BEAT_LEASE_SECONDS=4)
    killed_at = datetime.now().astimezone()
    wait_until(lambda: holder_pid() == second.pid, timeout=30, interval=0.2, what="the standby to take over")
    time.sleep(3)
    second.stop()
    sent = heartbeat_send_times(broker)

    # Never two sends for one tick: consecutive sends of a 1 s entry are about a second apart.
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(sent)]
    assert min(gaps) > 0.5, f"the entry was sent twice for one tick: gaps {gaps}"
    span = (sent[-1] - sent[0]).total_seconds()
    assert len(sent) <= span + 2, f"{len(sent)} sends in {span:.1f} s"
    assert len(both_running) >= 4
    # The standby took over: sends continue after the kill, after at most the lease plus a tick or two.
    after_kill = [moment for moment in sent if moment > killed_at]
    assert len(after_kill) >= 3, f"no sends after the holder was killed: {sent}"
    before_kill = [moment for moment in sent if moment <= killed_at]
    takeover_gap = (after_kill[0] - before_kill[-1]).total_seconds()
    assert takeover_gap < 4 + 6, f"the standby waited {takeover_gap:.1f} s (gaps {gaps})"
    assert "lease acquired" in second.log()
    print(f"\n{len(sent)} heartbeat sends over {span:.1f} s from two beats; takeover after the kill "
          f"took {takeover_gap:.1f} s (lease 4 s)")

