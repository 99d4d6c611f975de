"""Group commit against the real database: concurrent writes share transactions, each caller
answered only once its item committed, and a bad item or a lost database handled as such."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from ticketing.shared.db import sql
from ticketing.shared.db.engine import create_engine
from ticketing.shared.db.group_commit import GroupCommit
from ticketing.shared.db.unit_of_work import UnitOfWork, in_unit_of_work
from ticketing.shared.settings import Settings

probe = Table(
    "group_commit_probe",
    MetaData(),
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("value", Integer, nullable=False),
)


@pytest.fixture
async def probe_engine(databases: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(databases, "order")
    async with engine.begin() as conn:
        await conn.run_sync(probe.metadata.drop_all)
        await conn.run_sync(probe.metadata.create_all)
    try:
        yield engine
    finally:
        async with engine.begin() as conn:
            await conn.run_sync(probe.metadata.drop_all)
        await engine.dispose()


async def write_probes(uow: UnitOfWork, ids: Sequence[int]) -> None:
    uow.write(*(sql.insert_row(probe, {"id": i, "value": i}) for i in ids))


async def stored(engine: AsyncEngine) -> set[int]:
    async with engine.connect() as conn:
        return set((await conn.scalars(select(probe.c.id))).all())


async def test_concurrent_writes_share_transactions_and_each_returns_after_its_commit(
    probe_engine: AsyncEngine,
) -> None:
    commits = 0

    def count() -> None:
        nonlocal commits
        commits += 1

    writer: GroupCommit[int] = GroupCommit(probe_engine, write_probes, after_commit=count)

    async def write(i: int) -> None:
        await writer.write(i)
        assert i in await stored(probe_engine)  # answered only once committed

    await asyncio.gather(*(write(i) for i in range(200)))
    assert await stored(probe_engine) == set(range(200))
    assert writer.transactions == commits
    assert commits < 50  # 200 concurrent writes shared a handful of transactions


async def test_a_bad_item_fails_alone_and_the_rest_of_its_group_commits(
    probe_engine: AsyncEngine,
) -> None:
    await in_unit_of_work(probe_engine, lambda uow: write_probes(uow, [7]))
    writer: GroupCommit[int] = GroupCommit(probe_engine, write_probes, writers=1)
    results = await asyncio.gather(*(writer.write(i) for i in range(20)), return_exceptions=True)
    failed = [i for i, r in enumerate(results) if isinstance(r, BaseException)]
    assert failed == [7]
    assert isinstance(results[7], IntegrityError)
    assert await stored(probe_engine) == set(range(20))


async def test_an_unreachable_database_fails_every_item_without_retrying_one_by_one(
    databases: Settings,
) -> None:
    engine = create_engine(
        Settings(mysql_url="mysql+aiomysql://root@127.0.0.1:1", db_pool_timeout=2), "order"
    )
    calls = 0

    async def write_many(uow: UnitOfWork, ids: Sequence[int]) -> None:
        nonlocal calls
        calls += 1

    writer: GroupCommit[int] = GroupCommit(engine, write_many)
    try:
        results = await asyncio.gather(
            *(writer.write(i) for i in range(10)), return_exceptions=True
        )
    finally:
        await engine.dispose()
    assert all(isinstance(r, OperationalError) for r in results)
    assert calls == 0


async def test_a_cancelled_caller_hears_of_it_only_after_its_item_committed(
    probe_engine: AsyncEngine,
) -> None:
    writer: GroupCommit[int] = GroupCommit(probe_engine, write_probes)
    task = asyncio.create_task(writer.write(1))
    await asyncio.sleep(0)  # queued, and the writer is on its way
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await stored(probe_engine) == {1}  # written, and known to be before the caller ended
