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
    """A batch read in place: ``len(b)``, ``b[i]`` -> ``(timestamp, key, value)``.

    ``heads`` holds every record's ``(timestamp, key_end, value_end)`` and
    ``data`` the offset of the data area, for loops that read values only.
    """

    __slots__ = ("buf", "heads", "data")

    def __init__(self, buf):
        if len(buf) < 8:
            raise BatchError(f"batch of {len(buf)} bytes is shorter than its 8-byte header")
        version, n = _HEAD.unpack_from(buf, 0)
        if version != VERSION:
            raise BatchError(f"batch version {version}, expected {VERSION}")
        data = 8 + 16 * n
        if data > len(buf):
            raise BatchError(f"batch of {len(buf)} bytes cannot hold {n} record headers")
        buf = bytes(buf)
        heads = list(_REC.iter_unpack(memoryview(buf)[8:data]))
        prev = 0
        size = len(buf) - data
        for i, (_, k, v) in enumerate(heads):
            if not prev <= k <= v <= size:
                raise BatchError(f"record {i} has offsets {k}..{v} outside {prev}..{size}")
            prev = v
        self.buf = buf
        self.heads = heads
        self.data = data

    def __len__(self):
        return len(self.heads)

    def __getitem__(self, i):
        if not 0 <= i < len(self.heads):
            raise IndexError(f"record {i} of a batch of {len(self.heads)}")
        ts, k, v = self.heads[i]
        start = self.heads[i - 1][2] if i else 0
        d = self.data
        return ts, self.buf[d + start : d + k], self.buf[d + k : d + v]

    def __iter__(self):
        buf, d, start = self.buf, self.data, 0
        for ts, k, v in self.heads:
            yield ts, buf[d + start : d + k], buf[d + k : d + v]
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
