"""The packed batch layout (see docs/plugin-abi.md), read and written in place.

A batch is ``u32 version (=1), u32 count``, then ``count`` 16-byte headers
``i64 timestamp, u32 key_end, u32 value_end`` and the data area with the key
and value bytes of every record, in order. All integers are little-endian.
"""

import struct

VERSION = 1
#: The timestamp of a record without event time.
NO_TIMESTAMP = -(1 << 63)
_HEAD = struct.Struct("<II")
_REC = struct.Struct("<qII")


class BatchError(ValueError):
    """A malformed batch."""


class Batch:
    """A batch read in place: ``len(b)``, ``b[i]`` -> ``(timestamp, key, value)``."""

    __slots__ = ("_buf", "_n", "_data")

    def __init__(self, buf):
        if len(buf) < 8:
            raise BatchError(f"batch of {len(buf)} bytes is shorter than its 8-byte header")
        version, n = _HEAD.unpack_from(buf, 0)
        if version != VERSION:
            raise BatchError(f"batch version {version}, expected {VERSION}")
        data = 8 + 16 * n
        if data > len(buf):
            raise BatchError(f"batch of {len(buf)} bytes cannot hold {n} record headers")
        prev = 0
        size = len(buf) - data
        for i in range(n):
            _, k, v = _REC.unpack_from(buf, 8 + 16 * i)
            if not prev <= k <= v <= size:
                raise BatchError(f"record {i} has offsets {k}..{v} outside {prev}..{size}")
            prev = v
        self._buf = memoryview(buf)
        self._n = n
        self._data = data

    def __len__(self):
        return self._n

    def __getitem__(self, i):
        if not 0 <= i < self._n:
            raise IndexError(f"record {i} of a batch of {self._n}")
        ts, k, v = _REC.unpack_from(self._buf, 8 + 16 * i)
        start = 0 if i == 0 else _REC.unpack_from(self._buf, 8 + 16 * (i - 1))[2]
        d = self._data
        return ts, bytes(self._buf[d + start : d + k]), bytes(self._buf[d + k : d + v])

    def __iter__(self):
        buf, d, start = self._buf, self._data, 0
        for i in range(self._n):
            ts, k, v = _REC.unpack_from(buf, 8 + 16 * i)
            yield ts, bytes(buf[d + start : d + k]), bytes(buf[d + k : d + v])
            start = v


class BatchBuilder:
    """Builds a batch: ``push(timestamp, key, value)`` then ``finish()``."""

    __slots__ = ("_heads", "_data", "_n")

    def __init__(self):
        self._heads = bytearray()
        self._data = bytearray()
        self._n = 0

    def __len__(self):
        return self._n

    def push(self, timestamp, key, value):
        data = self._data
        data += key
        k = len(data)
        data += value
        self._heads += _REC.pack(timestamp, k, len(data))
        self._n += 1

    def finish(self):
        out = _HEAD.pack(VERSION, self._n) + self._heads + self._data
        self._heads, self._data, self._n = bytearray(), bytearray(), 0
        return bytes(out)
