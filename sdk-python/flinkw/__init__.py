"""flinkw — the Python SDK for flinkw plugins.

A flinkw job is one WebAssembly component. Write it as a fluent pipeline,
like Flink's DataStream API (and the Rust SDK), register it with ``@job``,
and re-export the component's entry points::

    import flinkw
    from flinkw.exports import Plan, Transform, Keyed, Snapshot, Window  # noqa: F401

    @flinkw.job
    def wordcount(env):
        count = flinkw.ValueState("count")

        def counter(ctx, word, out):
            n = (count.get(ctx) or 0) + 1
            count.set(ctx, n)
            out.emit(f"{word} {n}")

        (env.source(flinkw.File.lines(env.config.require("input")))
            .flat_map(str.split).name("split-words")
            .key_by(lambda w: w)
            .process(counter).name("count")
            .sink(flinkw.Stdout()))

Build it with ``componentize-py -d wit -w job componentize app -p . -p
sdk-python -o plugin.wasm`` (or ``flinkw plugin build``).

How it runs: ``plan`` turns the pipeline into a job graph. Consecutive
stateless steps (``map``, ``filter``, ``flat_map``, ``key_by``,
``assign_timestamps``) are fused into one guest call per batch; records cross
the boundary only in packed batches (``flinkw.batch``). Keys are encoded like
the Rust SDK's, values between operators as JSON (``flinkw.codec``).
"""

import re
import traceback

from wit_world.imports import log as _wlog
from wit_world.imports import metrics as _wmetrics
from wit_world.imports import state as _wstate
from wit_world.imports import timers as _wtimers
from wit_world.imports import types as _wt

from . import codec
from .batch import NO_TIMESTAMP, Batch, BatchBuilder
from .codec import Bid

__all__ = [
    "job", "Env", "Config", "JobError", "Stream", "KeyedStream", "WindowedStream",
    "File", "Datagen", "Stdout", "FileSink", "PartFileSink", "Blackhole", "Bid",
    "ValueState", "ListState", "MapState", "Tumbling", "Sliding", "Session",
    "WatermarkStrategy", "AggregateFunction", "TimeWindow", "EVENT_TIME",
    "PROCESSING_TIME", "log", "counter_add", "gauge_set", "Batch", "BatchBuilder",
    "NO_TIMESTAMP",
]

#: Timer domains passed to ``on_timer``.
EVENT_TIME, PROCESSING_TIME = "event-time", "processing-time"


class JobError(Exception):
    """An error of job code whose message is shown to the user as it is."""


# --- logging and metrics ----------------------------------------------------

_LEVELS = {
    "trace": _wlog.Level.TRACE, "debug": _wlog.Level.DEBUG, "info": _wlog.Level.INFO,
    "warn": _wlog.Level.WARN, "error": _wlog.Level.ERROR,
}


def log(level, message):
    """Writes a line to the host's log; ``level`` is ``"info"``, ``"warn"``, ..."""
    _wlog.log(_LEVELS[level], str(message))


def counter_add(name, delta=1):
    """Adds ``delta`` to the counter ``name`` of the job's metrics."""
    _wmetrics.counter_add(name, delta)


def gauge_set(name, value):
    """Sets the gauge ``name`` of the job's metrics."""
    _wmetrics.gauge_set(name, float(value))


# --- the job function -------------------------------------------------------

_JOB = []


def job(fn):
    """Registers ``fn(env)`` as this plugin's job (use once, as a decorator)."""
    _JOB[:] = [fn]
    return fn


class Config:
    """The ``--set key=value`` config; every key read is reported to the host,
    which refuses keys nobody reads."""

    def __init__(self, pairs):
        self._values = dict(pairs)
        self.read = set()

    def get(self, key, default=None):
        """The value of ``key`` (a string), or ``default``."""
        self.read.add(key)
        return self._values.get(key, default)

    def require(self, key):
        """The value of ``key``, or an error naming the missing key."""
        value = self.get(key)
        if value is None:
            raise JobError(f"missing config `{key}` (set it with --set {key}=...)")
        return value

    def get_int(self, key, default):
        """The value of ``key`` as an integer, or ``default`` when unset."""
        value = self.get(key)
        if value is None:
            return default
        try:
            return int(value)
        except ValueError:
            raise JobError(f"bad value {value!r} for config `{key}`: not an integer") from None


class _Graph:
    """The job graph being built, and the functions the host calls by id."""

    def __init__(self):
        self.name = "job"
        self.parallelism = None
        self.nodes = []
        self.edges = []
        self.chains = []
        self.keyed = []
        self.windows = []
        self.snapshot = None
        self.restore = None

    def add_node(self, name, kind, parallelism=None):
        self.nodes.append(_wt.Node(len(self.nodes), name, kind, parallelism, None))
        return len(self.nodes) - 1

    def connect(self, port, target, partitioning):
        node, side = port
        self.edges.append(_wt.Edge(node, target, partitioning, side))


class Env:
    """Where a job starts: its config, and sources."""

    def __init__(self, config, graph):
        self.config = config
        self._graph = graph

    def set_name(self, name):
        """Sets the job's name, shown by the host."""
        self._graph.name = name

    def set_parallelism(self, parallelism):
        """Sets the default parallelism of every operator."""
        self._graph.parallelism = parallelism

    def guest_state(self, snapshot, restore):
        """Registers ``snapshot() -> bytes`` and ``restore(bytes)`` for state the
        plugin keeps in its own memory (called at checkpoints / recovery)."""
        self._graph.snapshot, self._graph.restore = snapshot, restore

    def source(self, source):
        """Starts a stream from a source (``File.lines(...)``, ``Datagen.bids(...)``)."""
        g = self._graph
        node = g.add_node(source.name, _wt.NodeKind_Source(_wt.Connector(source.kind, source.options)))
        return Stream(g, (node, None), source.decode, source.text)


# --- sources and sinks ------------------------------------------------------


class _Source:
    def __init__(self, name, kind, options, decode, text):
        self.name, self.kind, self.options = name, kind, options
        self.decode, self.text = decode, text

    def skip_bad_lines(self):
        """Skips (and counts) lines that do not parse instead of failing."""
        self.options.append(("bad-lines", "skip"))
        return self


class File:
    """Files read by the host."""

    @staticmethod
    def lines(path):
        """Each line of a text file, as a ``str``."""
        return _Source("file-text", "file", [("path", path), ("format", "text")], codec.decode_text, True)

    @staticmethod
    def csv(path):
        """Each row of a CSV file with a header, as a ``dict`` (numbers as numbers)."""
        return _Source("file-csv", "file", [("path", path), ("format", "csv")], codec.decode_value, False)

    @staticmethod
    def json_lines(path):
        """Each line of a JSON-lines file, parsed."""
        return _Source("file-jsonl", "file", [("path", path), ("format", "jsonl")], codec.decode_value, False)


class Datagen:
    """Records generated by the host."""

    @staticmethod
    def sequence(count):
        """The integers ``0..count`` (0 = unbounded)."""
        return _Source("datagen", "datagen", [("kind", "sequence"), ("count", str(count))], codec.decode_sequence, False)

    @staticmethod
    def bids(count, seed=None):
        """``count`` benchmark bids (``Bid``), deterministic for a seed."""
        options = [("kind", "bids"), ("count", str(count))]
        if seed is not None:
            options.append(("seed", str(seed)))
        return _Source("datagen", "datagen", options, codec.decode_bid, False)


class _Sink:
    def __init__(self, name, kind, options, text):
        self.name, self.kind, self.options, self.text = name, kind, options, text


def Stdout():
    """Prints each record as a line on the host's standard output."""
    return _Sink("stdout", "stdout", [], True)


def FileSink(path):
    """Writes each record as a line to ``path``."""
    return _Sink("file", "file", [("path", path)], True)


def PartFileSink(directory):
    """Part files published at checkpoints (exactly once with ``--checkpoint-dir``)."""
    return _Sink("part-files", "part-files", [("path", directory)], True)


def Blackhole():
    """Discards records (for benchmarks)."""
    return _Sink("blackhole", "blackhole", [], False)


# --- event time and windows -------------------------------------------------


class WatermarkStrategy:
    """How the host derives watermarks from a stream's timestamps."""

    def __init__(self, strategy, idle_ms=None):
        self._strategy, self._idle_ms = strategy, idle_ms

    @staticmethod
    def bounded_out_of_orderness(ms):
        """Records arrive at most ``ms`` out of order."""
        return WatermarkStrategy(_wt.WatermarkStrategy_BoundedOutOfOrderness(int(ms)))

    @staticmethod
    def monotonous():
        """Timestamps never decrease."""
        return WatermarkStrategy(_wt.WatermarkStrategy_Monotonous())

    def with_idleness(self, ms):
        """After ``ms`` without records a subtask stops holding back the watermark."""
        return WatermarkStrategy(self._strategy, int(ms))

    def _wit(self):
        return _wt.Watermarks(self._strategy, self._idle_ms)


class Tumbling:
    """Fixed windows of ``size_ms``, aligned to the epoch (+ ``offset_ms``)."""

    def __init__(self, size_ms, offset_ms=0):
        self._wit = _wt.WindowAssigner_Tumbling(_wt.Tumbling(int(size_ms), int(offset_ms)))

    of = classmethod(lambda cls, size_ms, offset_ms=0: cls(size_ms, offset_ms))


class Sliding:
    """Windows of ``size_ms`` starting every ``slide_ms``."""

    def __init__(self, size_ms, slide_ms, offset_ms=0):
        self._wit = _wt.WindowAssigner_Sliding(_wt.Sliding(int(size_ms), int(slide_ms), int(offset_ms)))

    of = classmethod(lambda cls, size_ms, slide_ms, offset_ms=0: cls(size_ms, slide_ms, offset_ms))


class Session:
    """Windows per key that close after ``gap_ms`` without records."""

    def __init__(self, gap_ms):
        self._wit = _wt.WindowAssigner_Session(int(gap_ms))

    with_gap = classmethod(lambda cls, gap_ms: cls(gap_ms))


class TimeWindow:
    """A window ``[start, end)`` in ms since the epoch."""

    __slots__ = ("start", "end")

    def __init__(self, start, end):
        self.start, self.end = start, end

    def __repr__(self):
        return f"TimeWindow({self.start}, {self.end})"


class AggregateFunction:
    """An incremental window aggregate (Flink's ``AggregateFunction``).
    Accumulators must be JSON values (numbers, strings, lists, dicts)."""

    def create_accumulator(self):
        """A new, empty accumulator."""
        raise NotImplementedError

    def add(self, acc, value):
        """Returns ``acc`` with ``value`` added."""
        raise NotImplementedError

    def merge(self, a, b):
        """Combines two accumulators (session windows that merge)."""
        raise NotImplementedError

    def result(self, acc):
        """The window's result."""
        return acc


# --- keyed state and the keyed context --------------------------------------


class Context:
    """What a keyed function knows about the record (or timer) it handles."""

    __slots__ = ("index", "timestamp")

    def __init__(self, index, timestamp):
        self.index = index
        #: The record's event time (ms), None if it has none; in ``on_timer``,
        #: the timer's time.
        self.timestamp = None if timestamp == NO_TIMESTAMP else timestamp

    def register_event_timer(self, time):
        """Calls ``on_timer`` for this key when the watermark reaches ``time``."""
        _wtimers.register_event_timer(self.index, time)

    def delete_event_timer(self, time):
        """Removes an event-time timer of this key."""
        _wtimers.delete_event_timer(self.index, time)

    def register_processing_timer(self, time):
        """Calls ``on_timer`` for this key when the wall clock reaches ``time``."""
        _wtimers.register_processing_timer(self.index, time)

    def delete_processing_timer(self, time):
        """Removes a processing-time timer of this key."""
        _wtimers.delete_processing_timer(self.index, time)

    def current_watermark(self):
        """The operator's current watermark (ms)."""
        return _wtimers.current_watermark()

    def current_processing_time(self):
        """The wall clock (ms since the epoch)."""
        return _wtimers.current_processing_time()


def _ttl(ttl_ms, update_on_read, return_expired):
    return None if ttl_ms is None else _wstate.TtlConfig(int(ttl_ms), update_on_read, return_expired)


class _State:
    _resource = None

    def __init__(self, name, ttl_ms=None, update_on_read=False, return_expired=False):
        self.name = name
        self._ttl = _ttl(ttl_ms, update_on_read, return_expired)
        self._handle = None

    def _h(self):
        # Opened on first use: handles belong to the instance running the call.
        if self._handle is None:
            self._handle = self._resource(self.name, self._ttl)
        return self._handle


class ValueState(_State):
    """One value per key (JSON), in the host's state backend."""

    _resource = _wstate.ValueState

    def get(self, ctx):
        """The current key's value, or None."""
        raw = self._h().get(ctx.index)
        return None if raw is None else codec.decode_value(raw)

    def set(self, ctx, value):
        """Sets the current key's value."""
        self._h().set(ctx.index, codec.encode_value(value))

    def clear(self, ctx):
        """Removes the current key's value."""
        self._h().clear(ctx.index)


class ListState(_State):
    """A list of values per key."""

    _resource = _wstate.ListState

    def get(self, ctx):
        """The current key's list."""
        return [codec.decode_value(v) for v in self._h().get(ctx.index)]

    def add(self, ctx, value):
        """Appends to the current key's list."""
        self._h().add(ctx.index, codec.encode_value(value))

    def update(self, ctx, values):
        """Replaces the current key's list."""
        self._h().update(ctx.index, [codec.encode_value(v) for v in values])

    def clear(self, ctx):
        """Removes the current key's list."""
        self._h().clear(ctx.index)


class MapState(_State):
    """A map per key; map keys are strings."""

    _resource = _wstate.MapState

    def get(self, ctx, key):
        """The value under ``key``, or None."""
        raw = self._h().get(ctx.index, key.encode())
        return None if raw is None else codec.decode_value(raw)

    def put(self, ctx, key, value):
        """Sets the value under ``key``."""
        self._h().put(ctx.index, key.encode(), codec.encode_value(value))

    def remove(self, ctx, key):
        """Removes ``key``."""
        self._h().remove(ctx.index, key.encode())

    def items(self, ctx):
        """Every ``(key, value)``, in key order."""
        return [(k.decode(), codec.decode_value(v)) for k, v in self._h().entries(ctx.index)]

    def clear(self, ctx):
        """Removes the current key's map."""
        self._h().clear(ctx.index)


class Collector:
    """Collects what a keyed function emits, with the current key."""

    __slots__ = ("_out", "_key", "_ts")

    def __init__(self, out):
        self._out, self._key, self._ts = out, b"", NO_TIMESTAMP

    def emit(self, value, timestamp=None):
        """Emits ``value`` with the current key and timestamp (or ``timestamp``)."""
        ts = self._ts if timestamp is None else timestamp
        self._out.push(ts, self._key, codec.encode_value(value))


# --- streams ----------------------------------------------------------------

_KINDS = {
    "map": _wt.StepKind.MAP, "filter": _wt.StepKind.FILTER, "flat_map": _wt.StepKind.FLAT_MAP,
    "key_by": _wt.StepKind.KEY_BY, "timestamps": _wt.StepKind.TIMESTAMPS,
}
_NAMES = {"map": "map", "filter": "filter", "flat_map": "flat-map", "key_by": "key-by", "timestamps": "timestamps"}


def _compose(steps, last):
    """Joins the steps front to back into one ``f(value, ts)`` ending in ``last``."""
    down = last
    for kind, fn in reversed(steps):
        down = _STEP[kind](fn, down)
    return down


def _map(fn, down):
    return lambda v, ts: down(fn(v), ts)


def _filter(fn, down):
    def step(v, ts):
        if fn(v):
            down(v, ts)
    return step


def _flat_map(fn, down):
    def step(v, ts):
        for x in fn(v):
            down(x, ts)
    return step


def _timestamps(fn, down):
    return lambda v, ts: down(v, fn(v))


_STEP = {"map": _map, "filter": _filter, "flat_map": _flat_map, "timestamps": _timestamps}


class Stream:
    """A stream of values. Stateless operators are fused into the pending
    segment, which becomes one transform node when the stream is keyed,
    windowed, merged or sunk."""

    def __init__(self, graph, upstream, decode, upstream_text):
        self._g = graph
        self._upstream = upstream
        self._decode = decode
        self._text = upstream_text
        self._steps = []  # (kind, fn)
        self._names = []
        self._parallelism = None
        self._watermarks = None

    def _then(self, kind, fn):
        self._steps.append((kind, fn))
        self._names.append(_NAMES[kind])
        return self

    def map(self, fn):
        """One value in, ``fn(value)`` out."""
        return self._then("map", fn)

    def filter(self, fn):
        """Keeps the values for which ``fn(value)`` is true."""
        return self._then("filter", fn)

    def flat_map(self, fn):
        """Every value of the iterable ``fn(value)`` out."""
        return self._then("flat_map", fn)

    def assign_timestamps(self, fn):
        """Sets each record's event time (ms since the epoch) to ``fn(value)``."""
        return self._then("timestamps", fn)

    def watermarks(self, strategy):
        """Derives watermarks from this stream's timestamps."""
        if self._steps:
            self._watermarks = strategy._wit()
        else:
            self._g.nodes[self._upstream[0]].watermarks = strategy._wit()
        return self

    def name(self, name):
        """Names the last operator (shown in the job graph and in errors)."""
        if self._names:
            self._names[-1] = name
        else:
            self._g.nodes[self._upstream[0]].name = name
        return self

    def parallelism(self, parallelism):
        """Sets the parallelism of the pending stateless operators."""
        self._parallelism = parallelism
        return self

    def key_by(self, fn, key_type=str):
        """Partitions the stream by ``fn(value)``, a ``key_type`` (``str``,
        ``int``, ``bytes`` or anything else JSON encodes)."""
        self._names.append("key-by")
        return KeyedStream(self, fn, key_type)

    def union(self, *others):
        """Merges this stream with others (Flink's ``union``)."""
        g = self._g
        ports = [(s._materialize(None, codec.encode_value), None) for s in (self, *others)]
        chain = len(g.chains)
        g.chains.append(lambda batch: batch)
        node = g.add_node("union", _wt.NodeKind_Transform(_wt.TransformNode(chain, [])))
        for p in ports:
            g.connect(p, node, _wt.Partitioning.FORWARD)
        return Stream(g, (node, None), codec.decode_value, False)

    def sink(self, sink):
        """Sends the stream to ``sink``; text sinks get strings as they are,
        other values as JSON."""
        g = self._g
        if not self._steps and self._text == sink.text and self._watermarks is None:
            port = self._upstream
        else:
            port = (self._materialize(None, codec.encode_text if sink.text else codec.encode_value), None)
        node = g.add_node(sink.name, _wt.NodeKind_Sink(_wt.Connector(sink.kind, sink.options)))
        g.connect(port, node, _wt.Partitioning.FORWARD)

    def _materialize(self, key, encode):
        """Turns the pending steps into one fused transform node; returns its id."""
        g = self._g
        out = BatchBuilder()
        push = out.push
        if key is None:
            def last(v, ts):
                push(ts, b"", encode(v))
        else:
            key_fn, key_type = key
            encode_key = codec.encode_key

            def last(v, ts):
                push(ts, encode_key(key_fn(v), key_type), encode(v))
        head = _compose(self._steps, last)
        decode = self._decode

        def chain(batch):
            b = Batch(batch)
            buf, d = b.buf, b.data
            i = 0
            try:
                # The hot loop: values only, straight from the header list.
                for i, (ts, k, v) in enumerate(b.heads):
                    head(decode(buf[d + k : d + v]), ts)
            except Exception as e:
                raise _RecordFailure(e, i, b[i][2]) from e
            return out.finish()

        chain_id = len(g.chains)
        g.chains.append(chain)
        kinds = [k for k, _ in self._steps] + (["key_by"] if key is not None else [])
        steps = [_wt.Step(_KINDS[k], n) for k, n in zip(kinds, self._names)]
        name = " -> ".join(s.name for s in steps) or "encode"
        node = g.add_node(name, _wt.NodeKind_Transform(_wt.TransformNode(chain_id, steps)), self._parallelism)
        g.nodes[node].watermarks = self._watermarks
        g.connect(self._upstream, node, _wt.Partitioning.FORWARD)
        return node


class KeyedStream:
    """A stream partitioned by key."""

    def __init__(self, stream, key_fn, key_type):
        self._stream, self._key_fn, self._key_type = stream, key_fn, key_type

    def name(self, name):
        """Names the key-by step."""
        self._stream._names[-1] = name
        return self

    def _keying(self):
        return self._stream._materialize((self._key_fn, self._key_type), codec.encode_value)

    def process(self, fn, on_timer=None):
        """Runs ``fn(ctx, value, out)`` on each value with keyed state and
        timers; ``on_timer(ctx, key, timestamp, domain, out)`` handles timers."""
        s = self._stream
        g = s._g
        upstream = self._keying()
        key_type = self._key_type
        out = BatchBuilder()
        collector = Collector(out)
        decode_value, decode_key = codec.decode_value, codec.decode_key

        def process(batch):
            b = Batch(batch)
            for i, (ts, key, value) in enumerate(b):
                collector._key, collector._ts = key, ts
                try:
                    fn(Context(i, ts), decode_value(value), collector)
                except Exception as e:
                    raise _RecordFailure(e, i, value, key) from e
            return out.finish()

        def timers(batch):
            b = Batch(batch)
            for i, (ts, key, value) in enumerate(b):
                collector._key, collector._ts = key, ts
                domain = PROCESSING_TIME if value[:1] == b"\x01" else EVENT_TIME
                if on_timer is not None:
                    try:
                        on_timer(Context(i, ts), decode_key(key, key_type), ts, domain, collector)
                    except Exception as e:
                        raise _RecordFailure(e, i, value, key, "timer") from e
            return out.finish()

        fn_id = len(g.keyed)
        g.keyed.append((process, timers))
        node = g.add_node("process", _wt.NodeKind_KeyedProcess(fn_id))
        g.connect((upstream, None), node, _wt.Partitioning.HASH)
        return Stream(g, (node, None), decode_value, False)

    def window(self, assigner):
        """Groups each key's records into event-time windows (``Tumbling``,
        ``Sliding``, ``Session``); the stream needs timestamps and watermarks."""
        return WindowedStream(self, assigner)


class WindowedStream:
    """A keyed stream cut into windows."""

    def __init__(self, keyed, assigner):
        self._keyed = keyed
        self._assigner = assigner._wit
        self._lateness = 0
        self._late = None
        self._processing_time = False

    def allowed_lateness(self, ms):
        """Keeps windows open ``ms`` after they fire for late records."""
        self._lateness = int(ms)
        return self

    def processing_time(self):
        """Makes these processing-time windows."""
        self._processing_time = True
        return self

    def late_records(self, route):
        """Sends records that arrive after their window closed to
        ``route(stream)`` instead of dropping them."""
        self._late = route
        return self

    def aggregate(self, agg, finish=None):
        """Aggregates each window with ``agg`` (an ``AggregateFunction``);
        ``finish(key, window, result)`` makes the record to emit."""
        key_type = self._keyed._key_type
        decode_value, encode_value = codec.decode_value, codec.encode_value

        def accumulate(accs, batch, targets):
            accs = [agg.create_accumulator() if a is None else decode_value(a) for a in accs]
            b = Batch(batch)
            cur, value = -1, None
            for record, slot in targets:
                if record != cur:
                    cur, raw = record, b[record][2]
                    value = decode_value(raw)
                try:
                    accs[slot] = agg.add(accs[slot], value)
                except Exception as e:
                    raise _RecordFailure(e, record, raw) from e
            return [encode_value(a) for a in accs]

        def merge(accs):
            merged = None
            for raw in accs:
                acc = decode_value(raw)
                merged = acc if merged is None else agg.merge(merged, acc)
            return encode_value(agg.create_accumulator() if merged is None else merged)

        def emit(fired):
            out = BatchBuilder()
            for f in fired:
                key = codec.decode_key(f.key, key_type)
                result = agg.result(decode_value(f.accumulator))
                value = result if finish is None else finish(key, TimeWindow(f.start, f.end), result)
                out.push(f.end - 1, f.key, encode_value(value))
            return out.finish()

        return self._finish(_wt.WindowMode.AGGREGATE, (accumulate, merge, emit, None))

    def process(self, fn):
        """Runs ``fn(key, window, values)`` over all records of each window
        when it fires; it returns the values to emit."""
        key_type = self._keyed._key_type

        def process(fired):
            out = BatchBuilder()
            for w in fired:
                key = codec.decode_key(w.key, key_type)
                values = [codec.decode_value(r[2]) for r in Batch(w.elements)]
                for value in fn(key, TimeWindow(w.start, w.end), values):
                    out.push(w.end - 1, w.key, codec.encode_value(value))
            return out.finish()

        return self._finish(_wt.WindowMode.PROCESS, (None, None, None, process))

    def _finish(self, mode, fns):
        g = self._keyed._stream._g
        upstream = self._keyed._keying()
        function = len(g.windows)
        g.windows.append(fns)
        wnode = _wt.WindowNode(mode, self._assigner, self._lateness, function, self._processing_time)
        node = g.add_node("window", _wt.NodeKind_Window(wnode))
        g.connect((upstream, None), node, _wt.Partitioning.HASH)
        if self._late is not None:
            self._late(Stream(g, (node, "late"), codec.decode_value, False))
        return Stream(g, (node, None), codec.decode_value, False)


# --- errors -----------------------------------------------------------------


def _short(text, limit=120):
    return text if len(text) <= limit else text[:limit] + "..."


def _show_key(raw):
    """A key for an error message: the string it encodes, else its bytes."""
    try:
        key = codec.decode_key(raw, str)
        if codec.encode_key(key, str) == raw:
            return _short(repr(key))
    except Exception:  # noqa: BLE001 — any undecodable key is shown as bytes
        pass
    return _short(repr(bytes(raw)))


def _show_value(raw):
    """A value for an error message: decoded if it is JSON, else its text."""
    try:
        return _short(repr(codec.decode_value(raw)))
    except Exception:  # noqa: BLE001 — text lines, CSV rows, postcard bids
        return _short(repr(bytes(raw).decode("utf-8", "replace")))


class _RecordFailure(Exception):
    """An exception of job code, with the record that raised it."""

    def __init__(self, error, index, value, key=None, what="record"):
        super().__init__(str(error))
        self.error, self.index, self.value, self.key, self.what = error, index, value, key, what


def describe(error):
    """The message shown to the user for an exception of job code: the
    exception, the record that triggered it, and the Python stack."""
    cause = error.error if isinstance(error, _RecordFailure) else error
    if isinstance(cause, JobError):
        head = str(cause)
    else:
        head = f"{type(cause).__name__}: {cause}"
    lines = [head]
    if isinstance(error, _RecordFailure):
        where = f"  at {error.what} {error.index} of the batch"
        if error.key:
            where += f", key {_show_key(error.key)}"
        if error.what == "record":
            where += f", value {_show_value(error.value)}"
        lines.append(where)
    frames = [f for f in traceback.extract_tb(cause.__traceback__) if "/flinkw/" not in f.filename]
    if frames and not isinstance(cause, JobError):
        lines.append("guest stack (Python, innermost last):")
        for f in frames:
            # componentize-py mounts each source folder as /0, /1, ...
            lines.append(f"  {f.name} at {re.sub(r'^/[0-9]+/', '', f.filename)}:{f.lineno}")
            if f.line:
                lines.append(f"      {f.line}")
    return "\n".join(lines)
