"""The stack's Prefect server begins SQLite transactions IMMEDIATE (``amlflows/prefect_server.py``): the race that
makes Prefect's own configuration answer "database is locked" (a transaction reads, another writes and commits,
the first then writes) fails with Prefect's DEFERRED transactions and queues with ours. Each side runs in a
process of its own, on Prefect's real SQLite configuration, so the change never leaks into this one."""

from __future__ import annotations

import subprocess
import sys

import pytest

RACE = '''
import asyncio, sys
import sqlalchemy as sa
from prefect.server.database.configurations import AioSqliteConfiguration

if sys.argv[2] == "immediate":
    from amlflows.prefect_server import begin_sqlite_transactions_immediately
    begin_sqlite_transactions_immediately()

async def race(path):
    config = AioSqliteConfiguration(connection_url=f"sqlite+aiosqlite:///{path}")
    engine = await config.engine()
    async with engine.begin() as connection:
        await connection.execute(sa.text("CREATE TABLE t (x int)"))
    first, second = await config.session(engine), await config.session(engine)

    async def another_writer():
        async with config.begin_transaction(second):
            await second.execute(sa.text("INSERT INTO t VALUES (1)"))

    async with config.begin_transaction(first):
        await first.execute(sa.text("SELECT count(*) FROM t"))
        other = asyncio.create_task(another_writer())
        await asyncio.sleep(0.5)  # the other writer's turn, while this transaction has read
        await first.execute(sa.text("INSERT INTO t VALUES (2)"))
    await other
    async with engine.connect() as connection:
        print("rows:", (await connection.execute(sa.text("SELECT count(*) FROM t"))).scalar())
    await engine.dispose()

asyncio.run(race(sys.argv[1]))
'''


@pytest.mark.parametrize(("transactions", "outcome"), [("deferred", "database is locked"), ("immediate", "rows: 2")])
def test_a_transaction_that_reads_then_writes_after_another_writer_fails_only_when_deferred(transactions, outcome, tmp_path):
    race = subprocess.run([sys.executable, "-c", RACE, str(tmp_path / "prefect.db"), transactions],
                          capture_output=True, text=True, timeout=120)
    assert outcome in race.stdout + race.stderr, race.stdout + race.stderr[-2000:]
