"""Ids are time-ordered UUIDv7 whose random bits never repeat across threads or forked children."""

from __future__ import annotations

import os
import threading
import time
import uuid

from ticketing.shared.ids import new_id


def test_ids_are_uuid7_and_time_ordered() -> None:
    first = new_id()
    time.sleep(0.002)
    second = new_id()
    assert first.version == 7
    assert first.variant == uuid.RFC_4122
    assert first < second
    assert len({new_id() for _ in range(1000)}) == 1000


def random_bits(value: uuid.UUID) -> int:
    return value.int & ((1 << 62) - 1)


def test_a_forked_child_never_repeats_its_parent_s_random_bits() -> None:
    new_id()  # the parent holds a page of random bytes now
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        os.write(write, str(random_bits(new_id())).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    with os.fdopen(read) as pipe:
        childs = int(pipe.read())
    assert childs != random_bits(new_id())


def test_threads_draw_distinct_random_bits() -> None:
    drawn: list[int] = []

    def draw() -> None:
        drawn.extend(random_bits(new_id()) for _ in range(2000))

    threads = [threading.Thread(target=draw) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(drawn)) == len(drawn) == 8000
