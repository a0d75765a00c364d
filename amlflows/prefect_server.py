"""The Prefect server ``amlflows up`` runs: Prefect's own ``prefect server start``, in this process, with SQLite's
transactions begun IMMEDIATE.

Prefect 3.8 begins most of its server's transactions on SQLite as DEFERRED. Such a transaction reads, then writes,
and must upgrade its lock to write; when another connection wrote in between, SQLite refuses at once with
"database is locked", without waiting out its busy timeout (https://www.sqlite.org/lang_transaction.html). Under
many runs at once (the load test: 20 flow runs through two workers) the server then answers writes with 503 and
logs the error (PrefectHQ/prefect#10188, #17473). Begun IMMEDIATE, a transaction takes the write lock as it
begins, where SQLite does wait (Prefect sets busy_timeout to 60 s), so writers queue instead of failing; reads
outside a transaction are as before. The change touches only Prefect's SQLite configuration: on PostgreSQL the
server is Prefect's, unchanged.

    python -m amlflows.prefect_server --host 127.0.0.1 --port 4200     # what `prefect server start` takes
"""

from __future__ import annotations

import sys
from contextlib import asynccontextmanager


def begin_sqlite_transactions_immediately() -> None:
    """Every transaction Prefect's server begins on SQLite takes the write lock when it begins."""
    from prefect.server.database.configurations import AioSqliteConfiguration

    begin_deferred_or_immediate = AioSqliteConfiguration.begin_transaction

    @asynccontextmanager
    async def begin_transaction(self, session, with_for_update: bool = False):
        async with begin_deferred_or_immediate(self, session, with_for_update=True) as transaction:
            yield transaction

    AioSqliteConfiguration.begin_transaction = begin_transaction


def main(arguments: list[str]) -> None:
    begin_sqlite_transactions_immediately()
    from prefect.cli import app

    sys.argv = ["prefect", "server", "start", *arguments]
    app()


if __name__ == "__main__":
    main(sys.argv[1:])
