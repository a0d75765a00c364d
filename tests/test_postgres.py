"""The stack's own PostgreSQL (``amlflows up --database postgresql``): a real cluster, made once, on loopback only,
behind a generated password that only its owner can read and that its log never shows."""

from __future__ import annotations

import asyncio
import json
import stat
import subprocess

import pytest

from amlflows.postgres import PostgresCluster, postgres_env
from tests.e2e.conftest import free_port


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A cluster made and started as `up` does, stopped afterwards."""
    cluster = PostgresCluster(tmp_path_factory.mktemp("stack") / "postgres", free_port())
    assert cluster.initialise()
    with (cluster.root / "postgres.log").open("w") as log:
        server = subprocess.Popen(cluster.server_command(), env=postgres_env(), stdout=log, stderr=subprocess.STDOUT)
    try:
        cluster.wait_and_create_database()
        yield cluster
    finally:
        server.terminate()
        server.wait(30)


def test_the_cluster_is_made_once_and_its_password_is_readable_by_its_owner_only(cluster):
    assert not cluster.initialise(), "a second up keeps the cluster and its password"
    assert stat.S_IMODE(cluster.connection_file.stat().st_mode) == 0o600
    assert not (cluster.root / "initdb-password").exists()
    assert password(cluster) not in (cluster.root / "postgres.log").read_text() and "***" in cluster.url(hide_password=True)


def test_prefect_s_database_is_made_and_the_password_is_asked_for(cluster):
    import asyncpg

    async def connect(password):
        connection = await asyncpg.connect(host="127.0.0.1", port=cluster.port, user="amlflows", password=password, database="prefect")
        await connection.close()

    asyncio.run(connect(password(cluster)))
    with pytest.raises(asyncpg.InvalidPasswordError):
        asyncio.run(connect("a-guess"))
    cluster.wait_and_create_database()  # a second up finds the database there


def test_the_server_listens_on_loopback_only(cluster):
    import asyncpg

    async def listen_addresses():
        connection = await asyncpg.connect(host="127.0.0.1", port=cluster.port, user="amlflows", password=password(cluster),
                                           database="prefect")
        try:
            return await connection.fetchval("SHOW listen_addresses")
        finally:
            await connection.close()

    assert asyncio.run(listen_addresses()) == "127.0.0.1"


def password(cluster) -> str:
    return json.loads(cluster.connection_file.read_text())["password"]
