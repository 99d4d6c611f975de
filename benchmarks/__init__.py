"""``make bench``: throughput, latency, relay speed, a flash sale and memory, with ceilings."""
