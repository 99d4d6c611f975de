"""Our partitioner sends every key where the Java client and aiokafka's default send it."""

from __future__ import annotations

import random
import uuid

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2

from ticketing.shared.messaging.partitioner import Murmur2Partitioner, murmur2

# Utils.murmur2 of these strings in the Java client (Kafka's own test vectors), signed.
JAVA = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


def test_murmur2_matches_the_java_client() -> None:
    for data, expected in JAVA.items():
        assert murmur2(data) == expected & 0xFFFFFFFF, data


def test_murmur2_matches_aiokafka_for_every_length_and_tail() -> None:
    rng = random.Random(6)
    for length in range(80):
        for _ in range(25):
            data = rng.randbytes(length)
            assert murmur2(data) == aiokafka_murmur2(data), data


def test_the_partitioner_picks_the_default_partition_for_every_key() -> None:
    ours, default = Murmur2Partitioner(), DefaultPartitioner()
    rng = random.Random(7)
    for count in (1, 2, 3, 7, 12, 50):
        partitions = list(range(count))
        for _ in range(300):
            key = str(uuid.UUID(int=rng.getrandbits(128))).encode()
            expected = default(key, partitions, partitions)
            assert ours(key, partitions, partitions) == expected
            assert ours(key, partitions, partitions) == expected  # again, from the cache


def test_a_keyless_record_goes_to_an_available_partition() -> None:
    ours = Murmur2Partitioner()
    assert {ours(None, [0, 1, 2], [2]) for _ in range(20)} == {2}
    assert {ours(None, [0, 1, 2], []) for _ in range(200)} == {0, 1, 2}
