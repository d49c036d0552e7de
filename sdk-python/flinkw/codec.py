"""How values and keys become bytes.

Keys are encoded as the Rust SDK encodes them (postcard), so a key computed
in Python lands in the same key group, and windows fire in the same order, as
in a Rust plugin: ``str`` -> varint length + UTF-8, ``int`` -> varint
(negative: zigzag), ``bytes`` as they are. Values that travel between
operators of the same plugin are JSON. Text sinks get strings as they are and
other values as compact JSON, like the Rust SDK.
"""

import json



def _plain(value):
    """JSON for objects with ``__slots__`` (``Bid``) or a ``__dict__``."""
    slots = getattr(type(value), "__slots__", None)
    if slots:
        return {name: getattr(value, name) for name in slots}
    if hasattr(value, "__dict__"):
        return vars(value)
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=_plain).encode


def varint(n, out):
    """Appends ``n`` (>= 0) as a LEB128 varint to the bytearray ``out``."""
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def read_varint(buf, pos):
    """Reads a LEB128 varint at ``pos``; returns ``(value, next_pos)``."""
    n = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        if b < 0x80:
            return n, pos
        shift += 7


def zigzag(n):
    """The zigzag code of a signed 64-bit integer."""
    return ((n << 1) ^ (n >> 63)) & 0xFFFFFFFFFFFFFFFF


def unzigzag(n):
    """The signed integer of a zigzag code."""
    return (n >> 1) ^ -(n & 1)


def encode_key(key, key_type):
    """The key bytes of ``key``, which must be of ``key_type``."""
    if key_type is str:
        if not isinstance(key, str):
            raise TypeError(f"key {key!r} is not a str; use key_by(..., key_type=...)")
        raw = key.encode()
        out = bytearray()
        varint(len(raw), out)
        out += raw
        return bytes(out)
    if key_type is int:
        if not isinstance(key, int):
            raise TypeError(f"key {key!r} is not an int; use key_by(..., key_type=...)")
        out = bytearray()
        varint(key if key >= 0 else zigzag(key), out)
        return bytes(out)
    if key_type is bytes:
        return bytes(key)
    return _dumps(key).encode()


def decode_key(raw, key_type):
    """The key of type ``key_type`` that ``encode_key`` wrote as ``raw``."""
    if key_type is str:
        n, pos = read_varint(raw, 0)
        return raw[pos : pos + n].decode()
    if key_type is int:
        return read_varint(raw, 0)[0]
    if key_type is bytes:
        return raw
    return json.loads(raw)


def encode_value(value):
    """Bytes of a value passed between this plugin's operators (JSON)."""
    return _dumps(value).encode()


def decode_value(raw):
    """The value ``encode_value`` wrote."""
    return json.loads(raw)


def encode_text(value):
    """A line for a text sink: a string as it is, anything else as JSON."""
    if isinstance(value, str):
        return value.encode()
    return _dumps(value).encode()


def decode_text(raw):
    """A line of a text source."""
    return raw.decode()


def decode_sequence(raw):
    """A ``datagen`` sequence number (postcard u64)."""
    return read_varint(raw, 0)[0]


class Bid:
    """A bid of the ``datagen`` source's ``bids`` kind."""

    __slots__ = ("auction", "bidder", "price", "ts")

    def __init__(self, auction, bidder, price, ts):
        self.auction, self.bidder, self.price, self.ts = auction, bidder, price, ts

    def __repr__(self):
        return f"Bid(auction={self.auction}, bidder={self.bidder}, price={self.price}, ts={self.ts})"


def decode_bid(raw):
    """A ``datagen`` bid (postcard ``{auction, bidder, price: u64, ts: i64}``)."""
    # One loop over the bytes instead of four read_varint calls: this is
    # most of the per-record cost of a bid pipeline in the interpreter.
    fields = []
    n = shift = 0
    for b in raw:
        if b < 0x80:
            fields.append(n | (b << shift))
            n = shift = 0
        else:
            n |= (b & 0x7F) << shift
            shift += 7
    a, b, c, t = fields
    return Bid(a, b, c, (t >> 1) ^ -(t & 1))


def encode_bid(bid):
    """The postcard bytes of a bid, as the ``datagen`` source writes them."""
    out = bytearray()
    varint(bid.auction, out)
    varint(bid.bidder, out)
    varint(bid.price, out)
    varint(zigzag(bid.ts), out)
    return bytes(out)
