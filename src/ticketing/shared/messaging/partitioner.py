"""Kafka's default partitioning, murmur2 of the key as the Java client computes it, done cheaper.

aiokafka's ``DefaultPartitioner`` hashes every key in pure Python a byte at a time, with a mask
after every operation, which the relay pays on every event. :class:`Murmur2Partitioner` reads
the key's 32-bit words in one unpack, and remembers the partition of recent keys (bookings are
keyed by their event, so a sale sends one key many times). Every key lands on the partition the
Java client and aiokafka choose, so producers of either kind can share a topic.
"""

from __future__ import annotations

import functools
import random
import struct

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


@functools.lru_cache(maxsize=64)
def _words(count: int) -> struct.Struct:
    return struct.Struct(f"<{count}I")


def murmur2(data: bytes) -> int:
    """The 32-bit MurmurHash2 of ``data``, unsigned (Java's ``Utils.murmur2`` is its signed
    reading)."""
    length = len(data)
    h = _SEED ^ length
    for word in _words(length >> 2).unpack_from(data):
        k = (word * _M) & _MASK
        k ^= k >> 24
        h = ((h * _M) & _MASK) ^ ((k * _M) & _MASK)
    tail = length & 3
    if tail:
        end = length - tail
        if tail == 3:
            h ^= data[end + 2] << 16
        if tail >= 2:
            h ^= data[end + 1] << 8
        h = ((h ^ data[end]) * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    return h ^ (h >> 15)


@functools.lru_cache(maxsize=4096)
def partition_index(key: bytes, partitions: int) -> int:
    """The index of ``key``'s partition among ``partitions`` (Java's ``toPositive(murmur2)``)."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class Murmur2Partitioner:
    """A drop-in for aiokafka's ``DefaultPartitioner`` (a producer's ``partitioner=``)."""

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        if key is None:  # spread keyless records, as the default does; no secret involved
            return random.choice(available or all_partitions)  # noqa: S311
        return all_partitions[partition_index(key, len(all_partitions))]
