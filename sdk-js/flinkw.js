// flinkw — the JavaScript SDK for flinkw plugins (ES module).
//
// A flinkw job is one WebAssembly component, built from a JS module with
// componentize-js. Write the job as a fluent pipeline, register it with
// `job(fn)`, and re-export the component's entry points:
//
//   import * as flinkw from './flinkw.js';
//   export { plan, transform, keyed, snapshot, window } from './flinkw.js';
//
//   flinkw.job((env) => {
//     const count = new flinkw.ValueState('count');
//     env.source(flinkw.File.lines(env.config.require('input')))
//       .flatMap((line) => line.split(' ')).name('split-words')
//       .keyBy((w) => w)
//       .process((ctx, word, out) => {
//         const n = (count.get(ctx) ?? 0) + 1;
//         count.set(ctx, n);
//         out.emit(`${word} ${n}`);
//       }).name('count')
//       .sink(flinkw.Stdout());
//   });
//
// Records cross the boundary in packed batches (`Batch`, `BatchBuilder`);
// keys are encoded like the Rust SDK's (postcard), values between operators
// as JSON; text sinks get strings as they are and other values as JSON.

import { log as witLog } from 'flinkw:plugin/log@0.1.0';
import { counterAdd, gaugeSet } from 'flinkw:plugin/metrics@0.1.0';
import {
  ValueState as WitValueState,
  ListState as WitListState,
  MapState as WitMapState,
} from 'flinkw:plugin/state@0.1.0';
import * as witTimers from 'flinkw:plugin/timers@0.1.0';

// ---------------------------------------------------------------- batches

/** The batch layout version. */
export const VERSION = 1;
/** The timestamp of a record without event time (i64::MIN). */
export const NO_TIMESTAMP = -(2n ** 63n);

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder();

/** A packed batch read in place: `length`, `get(i)` -> {timestamp, key, value}. */
export class Batch {
  constructor(bytes) {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (bytes.length < 8) throw new Error(`batch of ${bytes.length} bytes is shorter than its 8-byte header`);
    const version = view.getUint32(0, true);
    if (version !== VERSION) throw new Error(`batch version ${version}, expected ${VERSION}`);
    const n = view.getUint32(4, true);
    const data = 8 + 16 * n;
    if (data > bytes.length) throw new Error(`batch of ${bytes.length} bytes cannot hold ${n} record headers`);
    let prev = 0;
    const size = bytes.length - data;
    for (let i = 0; i < n; i++) {
      const k = view.getUint32(16 + 16 * i, true);
      const v = view.getUint32(20 + 16 * i, true);
      if (!(prev <= k && k <= v && v <= size)) throw new Error(`record ${i} has offsets ${k}..${v} outside ${prev}..${size}`);
      prev = v;
    }
    this.bytes = bytes;
    this.view = view;
    this.length = n;
    this.data = data;
  }

  /** Record `i`: timestamp (BigInt; NO_TIMESTAMP if none), key and value bytes. */
  get(i) {
    const { view, bytes, data } = this;
    const at = 8 + 16 * i;
    const start = i === 0 ? 0 : view.getUint32(at - 16 + 12, true);
    const k = view.getUint32(at + 8, true);
    const v = view.getUint32(at + 12, true);
    return {
      timestamp: view.getBigInt64(at, true),
      key: bytes.subarray(data + start, data + k),
      value: bytes.subarray(data + k, data + v),
    };
  }
}

/** Builds a packed batch: `push(timestamp, key, value)`, then `finish()`. */
export class BatchBuilder {
  constructor() {
    this.reset();
  }

  reset() {
    this.heads = new DataView(new ArrayBuffer(16 * 64));
    this.data = new Uint8Array(1024);
    this.count = 0;
    this.dataLen = 0;
  }

  /** Appends a record; `timestamp` is a BigInt, key and value Uint8Arrays. */
  push(timestamp, key, value) {
    if (16 * (this.count + 1) > this.heads.byteLength) {
      const grown = new Uint8Array(this.heads.byteLength * 2);
      grown.set(new Uint8Array(this.heads.buffer));
      this.heads = new DataView(grown.buffer);
    }
    const need = this.dataLen + key.length + value.length;
    if (need > this.data.length) {
      const grown = new Uint8Array(Math.max(need, this.data.length * 2));
      grown.set(this.data.subarray(0, this.dataLen));
      this.data = grown;
    }
    this.data.set(key, this.dataLen);
    const keyEnd = this.dataLen + key.length;
    this.data.set(value, keyEnd);
    this.dataLen = keyEnd + value.length;
    const at = 16 * this.count;
    this.heads.setBigInt64(at, timestamp, true);
    this.heads.setUint32(at + 8, keyEnd, true);
    this.heads.setUint32(at + 12, this.dataLen, true);
    this.count += 1;
  }

  /** The batch's bytes; the builder is empty again. */
  finish() {
    const out = new Uint8Array(8 + 16 * this.count + this.dataLen);
    const view = new DataView(out.buffer);
    view.setUint32(0, VERSION, true);
    view.setUint32(4, this.count, true);
    out.set(new Uint8Array(this.heads.buffer, 0, 16 * this.count), 8);
    out.set(this.data.subarray(0, this.dataLen), 8 + 16 * this.count);
    this.reset();
    return out;
  }
}

// ---------------------------------------------------------------- codecs

function pushVarint(out, n) {
  // n: a non-negative BigInt or Number.
  let v = BigInt(n);
  while (v >= 0x80n) {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  out.push(Number(v));
}

/** Reads a varint at `pos` as a BigInt; returns [value, nextPos]. */
function readVarint(bytes, pos) {
  let n = 0n;
  let shift = 0n;
  for (;;) {
    const b = bytes[pos++];
    n |= BigInt(b & 0x7f) << shift;
    if (b < 0x80) return [n, pos];
    shift += 7n;
  }
}

// The position after the last readSmall, so that decoders need no arrays.
let varintEnd = 0;

/** Reads a varint of at most 7 bytes (< 2^49) as a Number, fast (no BigInt:
 *  StarlingMonkey interprets, and BigInt arithmetic is slow there). */
function readSmall(bytes, pos) {
  let n = 0;
  let scale = 1;
  for (let i = 0; i < 7; i++) {
    const b = bytes[pos++];
    n += (b & 0x7f) * scale;
    if (b < 0x80) {
      varintEnd = pos;
      return n;
    }
    scale *= 128;
  }
  throw new Error('varint too large for a Number');
}

/** Key bytes as the Rust SDK writes them: strings as postcard strings,
 *  integers as varints (zigzag when negative), Uint8Arrays as they are,
 *  anything else as JSON. */
export function encodeKey(key) {
  if (typeof key === 'string') {
    const raw = utf8.encode(key);
    const out = [];
    pushVarint(out, raw.length);
    const bytes = new Uint8Array(out.length + raw.length);
    bytes.set(out);
    bytes.set(raw, out.length);
    return bytes;
  }
  if (typeof key === 'number' && Number.isInteger(key)) key = BigInt(key);
  if (typeof key === 'bigint') {
    const out = [];
    pushVarint(out, key >= 0n ? key : ((-key) << 1n) - 1n);
    return Uint8Array.from(out);
  }
  if (key instanceof Uint8Array) return key;
  return utf8.encode(JSON.stringify(key));
}

/** The key `encodeKey` wrote, given the type the key-by produced. */
export function decodeKey(raw, type) {
  if (type === 'string') {
    const [n, pos] = readVarint(raw, 0);
    return fromUtf8.decode(raw.subarray(pos, pos + Number(n)));
  }
  if (type === 'number') return Number(readVarint(raw, 0)[0]);
  if (type === 'bigint') return readVarint(raw, 0)[0];
  if (type === 'bytes') return raw;
  return JSON.parse(fromUtf8.decode(raw));
}

const encodeValue = (v) => utf8.encode(JSON.stringify(v));
const decodeValue = (raw) => JSON.parse(fromUtf8.decode(raw));
const encodeText = (v) => utf8.encode(typeof v === 'string' ? v : JSON.stringify(v));
const decodeText = (raw) => fromUtf8.decode(raw);
const decodeSequence = (raw) => Number(readVarint(raw, 0)[0]);

/** A bid of the `datagen` source's `bids` kind: {auction, bidder, price, ts}. */
export function decodeBid(raw) {
  const auction = readSmall(raw, 0);
  const bidder = readSmall(raw, varintEnd);
  const price = readSmall(raw, varintEnd);
  const t = readSmall(raw, varintEnd);
  // zigzag: even -> t / 2, odd -> -(t + 1) / 2
  const ts = t % 2 === 0 ? t / 2 : -(t + 1) / 2;
  return { auction, bidder, price, ts };
}

// ---------------------------------------------------------------- logging

/** Writes a line to the host's log; level: 'trace' | 'debug' | 'info' | 'warn' | 'error'. */
export function log(level, message) {
  witLog(level, String(message));
}

/** Adds `delta` to the counter `name`. */
export function counter(name, delta = 1) {
  counterAdd(name, BigInt(delta));
}

/** Sets the gauge `name`. */
export function gauge(name, value) {
  gaugeSet(name, Number(value));
}

// ---------------------------------------------------------------- job & config

/** An error whose message is shown to the user as it is. */
export class JobError extends Error {}

let jobFn = null;

/** Registers `fn(env)` as this plugin's job. */
export function job(fn) {
  jobFn = fn;
  return fn;
}

/** The `--set key=value` config; keys read are reported to the host. */
export class Config {
  constructor(pairs) {
    this.values = new Map(pairs);
    this.read = new Set();
  }

  /** The value of `key` (a string), or `fallback`. */
  get(key, fallback = undefined) {
    this.read.add(key);
    return this.values.has(key) ? this.values.get(key) : fallback;
  }

  /** The value of `key`, or an error naming the missing key. */
  require(key) {
    const v = this.get(key);
    if (v === undefined) throw new JobError(`missing config \`${key}\` (set it with --set ${key}=...)`);
    return v;
  }

  /** The value of `key` as an integer, or `fallback` when unset. */
  getInt(key, fallback) {
    const v = this.get(key);
    if (v === undefined) return fallback;
    if (!/^-?\d+$/.test(v)) throw new JobError(`bad value "${v}" for config \`${key}\`: not an integer`);
    return Number(v);
  }
}

class Graph {
  constructor() {
    this.name = 'job';
    this.parallelism = undefined;
    this.nodes = [];
    this.edges = [];
    this.chains = [];
    this.keyed = [];
    this.windows = [];
    this.snapshot = null;
    this.restore = null;
  }

  addNode(name, kind, parallelism = undefined) {
    this.nodes.push({ id: this.nodes.length, name, kind, parallelism, watermarks: undefined });
    return this.nodes.length - 1;
  }

  connect([node, side], target, partitioning) {
    this.edges.push({ source: node, target, partitioning, sideOutput: side });
  }
}

/** Where a job starts: its config, and sources. */
export class Env {
  constructor(config, graph) {
    this.config = config;
    this.graph = graph;
  }

  /** Sets the job's name. */
  setName(name) {
    this.graph.name = name;
  }

  /** Sets the default parallelism. */
  setParallelism(p) {
    this.graph.parallelism = p;
  }

  /** Registers `snapshot() -> Uint8Array` and `restore(bytes)` for guest-held state. */
  guestState(snapshot, restore) {
    this.graph.snapshot = snapshot;
    this.graph.restore = restore;
  }

  /** Starts a stream from a source. */
  source(source) {
    const node = this.graph.addNode(source.name, { tag: 'source', val: { kind: source.kind, options: source.options } });
    return new Stream(this.graph, [node, undefined], source.decode, source.text);
  }
}

// ---------------------------------------------------------------- connectors

function source(name, kind, options, decode, text) {
  return {
    name, kind, options, decode, text,
    skipBadLines() {
      this.options.push(['bad-lines', 'skip']);
      return this;
    },
  };
}

/** Files read by the host. */
export const File = {
  /** Each line of a text file, as a string. */
  lines: (path) => source('file-text', 'file', [['path', path], ['format', 'text']], decodeText, true),
  /** Each row of a CSV file with a header, as an object (numbers as numbers). */
  csv: (path) => source('file-csv', 'file', [['path', path], ['format', 'csv']], decodeValue, false),
  /** Each line of a JSON-lines file, parsed. */
  jsonLines: (path) => source('file-jsonl', 'file', [['path', path], ['format', 'jsonl']], decodeValue, false),
};

/** Records generated by the host. */
export const Datagen = {
  /** The integers 0..count (0 = unbounded). */
  sequence: (count) => source('datagen', 'datagen', [['kind', 'sequence'], ['count', String(count)]], decodeSequence, false),
  /** `count` benchmark bids. */
  bids: (count) => source('datagen', 'datagen', [['kind', 'bids'], ['count', String(count)]], decodeBid, false),
};

/** Prints each record as a line on the host's standard output. */
export const Stdout = () => ({ name: 'stdout', kind: 'stdout', options: [], text: true });
/** Writes each record as a line to `path`. */
export const FileSink = (path) => ({ name: 'file', kind: 'file', options: [['path', path]], text: true });
/** Part files published at checkpoints. */
export const PartFileSink = (dir) => ({ name: 'part-files', kind: 'part-files', options: [['path', dir]], text: true });
/** Discards records (benchmarks). */
export const Blackhole = () => ({ name: 'blackhole', kind: 'blackhole', options: [], text: false });

// ---------------------------------------------------------------- time and windows

/** How the host derives watermarks from timestamps. */
export const WatermarkStrategy = {
  /** Records arrive at most `ms` out of order. */
  boundedOutOfOrderness: (ms, idleMs) => ({
    strategy: { tag: 'bounded-out-of-orderness', val: BigInt(ms) },
    idleTimeoutMs: idleMs === undefined ? undefined : BigInt(idleMs),
  }),
  /** Timestamps never decrease. */
  monotonous: (idleMs) => ({
    strategy: { tag: 'monotonous' },
    idleTimeoutMs: idleMs === undefined ? undefined : BigInt(idleMs),
  }),
};

/** Fixed windows of `sizeMs`. */
export const Tumbling = (sizeMs, offsetMs = 0) => ({
  tag: 'tumbling', val: { sizeMs: BigInt(sizeMs), offsetMs: BigInt(offsetMs) },
});
/** Windows of `sizeMs` every `slideMs`. */
export const Sliding = (sizeMs, slideMs, offsetMs = 0) => ({
  tag: 'sliding', val: { sizeMs: BigInt(sizeMs), slideMs: BigInt(slideMs), offsetMs: BigInt(offsetMs) },
});
/** Windows per key closed by `gapMs` without records. */
export const Session = (gapMs) => ({ tag: 'session', val: BigInt(gapMs) });

// ---------------------------------------------------------------- keyed state

/** What a keyed function knows about the record (or timer) it handles. */
export class Context {
  constructor(index, timestamp) {
    this.index = index;
    /** Event time in ms (a Number), or undefined; in onTimer the timer's time. */
    this.timestamp = timestamp === NO_TIMESTAMP ? undefined : Number(timestamp);
  }

  registerEventTimer(time) { witTimers.registerEventTimer(this.index, BigInt(time)); }
  deleteEventTimer(time) { witTimers.deleteEventTimer(this.index, BigInt(time)); }
  registerProcessingTimer(time) { witTimers.registerProcessingTimer(this.index, BigInt(time)); }
  deleteProcessingTimer(time) { witTimers.deleteProcessingTimer(this.index, BigInt(time)); }
  currentWatermark() { return Number(witTimers.currentWatermark()); }
  currentProcessingTime() { return Number(witTimers.currentProcessingTime()); }
}

function ttlConfig(ttl) {
  if (!ttl) return undefined;
  return { millis: BigInt(ttl.millis), updateOnRead: !!ttl.updateOnRead, returnExpired: !!ttl.returnExpired };
}

class State {
  constructor(Resource, name, ttl) {
    this.Resource = Resource;
    this.name = name;
    this.ttl = ttlConfig(ttl);
    this.handle = null;
  }

  h() {
    if (this.handle === null) this.handle = new this.Resource(this.name, this.ttl);
    return this.handle;
  }
}

/** One JSON value per key. `ttl`: {millis, updateOnRead, returnExpired}. */
export class ValueState extends State {
  constructor(name, ttl) { super(WitValueState, name, ttl); }
  get(ctx) {
    const raw = this.h().get(ctx.index);
    return raw === undefined ? undefined : decodeValue(raw);
  }
  set(ctx, value) { this.h().set(ctx.index, encodeValue(value)); }
  clear(ctx) { this.h().clear(ctx.index); }
}

/** A list of JSON values per key. */
export class ListState extends State {
  constructor(name, ttl) { super(WitListState, name, ttl); }
  get(ctx) { return this.h().get(ctx.index).map(decodeValue); }
  add(ctx, value) { this.h().add(ctx.index, encodeValue(value)); }
  update(ctx, values) { this.h().update(ctx.index, values.map(encodeValue)); }
  clear(ctx) { this.h().clear(ctx.index); }
}

/** A map (string keys) per key. */
export class MapState extends State {
  constructor(name, ttl) { super(WitMapState, name, ttl); }
  get(ctx, key) {
    const raw = this.h().get(ctx.index, utf8.encode(key));
    return raw === undefined ? undefined : decodeValue(raw);
  }
  put(ctx, key, value) { this.h().put(ctx.index, utf8.encode(key), encodeValue(value)); }
  remove(ctx, key) { this.h().remove(ctx.index, utf8.encode(key)); }
  entries(ctx) { return this.h().entries(ctx.index).map(([k, v]) => [fromUtf8.decode(k), decodeValue(v)]); }
  clear(ctx) { this.h().clear(ctx.index); }
}

// ---------------------------------------------------------------- streams

class RecordFailure {
  constructor(error, index, value, key, what = 'record') {
    Object.assign(this, { error, index, value, key, what });
  }
}

const STEP_NAMES = { map: 'map', filter: 'filter', 'flat-map': 'flat-map', 'key-by': 'key-by', timestamps: 'timestamps' };

function compose(steps, last) {
  let down = last;
  for (let i = steps.length - 1; i >= 0; i--) {
    const [kind, fn] = steps[i];
    const next = down;
    if (kind === 'map') down = (v, ts) => next(fn(v), ts);
    else if (kind === 'filter') down = (v, ts) => { if (fn(v)) next(v, ts); };
    else if (kind === 'flat-map') down = (v, ts) => { for (const x of fn(v)) next(x, ts); };
    else if (kind === 'timestamps') down = (v) => next(v, BigInt(fn(v)));
  }
  return down;
}

/** A stream of values; stateless steps are fused into one guest call per batch. */
export class Stream {
  constructor(graph, upstream, decode, text) {
    Object.assign(this, { graph, upstream, decode, text });
    this.steps = [];
    this.names = [];
    this.par = undefined;
    this.wm = undefined;
  }

  then(kind, fn) {
    this.steps.push([kind, fn]);
    this.names.push(STEP_NAMES[kind]);
    return this;
  }

  /** One value in, `fn(value)` out. */
  map(fn) { return this.then('map', fn); }
  /** Keeps values for which `fn(value)` is true. */
  filter(fn) { return this.then('filter', fn); }
  /** Every value of the iterable `fn(value)` out. */
  flatMap(fn) { return this.then('flat-map', fn); }
  /** Sets each record's event time (ms) to `fn(value)`. */
  assignTimestamps(fn) { return this.then('timestamps', fn); }

  /** Derives watermarks from this stream's timestamps. */
  watermarks(strategy) {
    if (this.steps.length) this.wm = strategy;
    else this.graph.nodes[this.upstream[0]].watermarks = strategy;
    return this;
  }

  /** Names the last operator. */
  name(name) {
    if (this.names.length) this.names[this.names.length - 1] = name;
    else this.graph.nodes[this.upstream[0]].name = name;
    return this;
  }

  /** Sets the parallelism of the pending stateless operators. */
  parallelism(p) {
    this.par = p;
    return this;
  }

  /** Partitions the stream by `fn(value)` (a string, integer, Uint8Array or JSON value). */
  keyBy(fn) {
    this.names.push('key-by');
    return new KeyedStream(this, fn);
  }

  /** Merges this stream with others. */
  union(...others) {
    const g = this.graph;
    const ports = [this, ...others].map((s) => [s.materialize(null, encodeValue), undefined]);
    const chain = g.chains.length;
    g.chains.push((batch) => batch);
    const node = g.addNode('union', { tag: 'transform', val: { chain, steps: [] } });
    for (const p of ports) g.connect(p, node, 'forward');
    return new Stream(g, [node, undefined], decodeValue, false);
  }

  /** Sends the stream to a sink; text sinks get strings as they are, other values as JSON. */
  sink(sink) {
    const g = this.graph;
    let port = this.upstream;
    if (this.steps.length || this.text !== sink.text || this.wm) {
      port = [this.materialize(null, sink.text ? encodeText : encodeValue), undefined];
    }
    const node = g.addNode(sink.name, { tag: 'sink', val: { kind: sink.kind, options: sink.options } });
    g.connect(port, node, 'forward');
  }

  materialize(keyFn, encode) {
    const g = this.graph;
    const out = new BatchBuilder();
    const noKey = new Uint8Array(0);
    const last = keyFn
      ? (v, ts) => out.push(ts, encodeKey(keyFn(v)), encode(v))
      : (v, ts) => out.push(ts, noKey, encode(v));
    const head = compose(this.steps, last);
    const decode = this.decode;
    const chainFn = (bytes) => {
      const b = new Batch(bytes);
      // The hot loop reads headers in place (no record objects, no keys).
      const { view, data } = b;
      for (let i = 0; i < b.length; i++) {
        const at = 8 + 16 * i;
        const value = bytes.subarray(data + view.getUint32(at + 8, true), data + view.getUint32(at + 12, true));
        try {
          head(decode(value), view.getBigInt64(at, true));
        } catch (e) {
          throw new RecordFailure(e, i, value);
        }
      }
      return out.finish();
    };
    const chain = g.chains.length;
    g.chains.push(chainFn);
    const kinds = this.steps.map(([k]) => k).concat(keyFn ? ['key-by'] : []);
    const steps = kinds.map((kind, i) => ({ kind, name: this.names[i] }));
    const name = steps.map((s) => s.name).join(' -> ') || 'encode';
    const node = g.addNode(name, { tag: 'transform', val: { chain, steps } }, this.par);
    g.nodes[node].watermarks = this.wm;
    g.connect(this.upstream, node, 'forward');
    return node;
  }
}

/** A stream partitioned by key. */
export class KeyedStream {
  constructor(stream, keyFn) {
    this.stream = stream;
    this.keyType = 'string';
    this.keyFn = (v) => {
      const k = keyFn(v);
      if (!this.fixedType) this.keyType = keyTypeOf(k);
      return k;
    };
  }

  /** Names the key-by step. */
  name(name) {
    this.stream.names[this.stream.names.length - 1] = name;
    return this;
  }

  /** Declares the key's type for decoding keys back (in timers and windows)
   *  when this instance never computed one: 'string' (default), 'number',
   *  'bigint', 'bytes' or 'json'. */
  keyAs(type) {
    this.keyType = type;
    this.fixedType = true;
    return this;
  }

  keying() {
    return this.stream.materialize(this.keyFn, encodeValue);
  }

  /** Runs `fn(ctx, value, out)` per value with keyed state and timers;
   *  `onTimer(ctx, key, timestamp, domain, out)` handles timers. */
  process(fn, onTimer) {
    const g = this.stream.graph;
    const upstream = this.keying();
    const out = new BatchBuilder();
    let curKey = null;
    let curTs = 0n;
    const collector = {
      emit(value, timestamp) {
        out.push(timestamp === undefined ? curTs : BigInt(timestamp), curKey, encodeValue(value));
      },
    };
    const process = (bytes) => {
      const b = new Batch(bytes);
      for (let i = 0; i < b.length; i++) {
        const r = b.get(i);
        curKey = r.key;
        curTs = r.timestamp;
        try {
          fn(new Context(i, r.timestamp), decodeValue(r.value), collector);
        } catch (e) {
          throw new RecordFailure(e, i, r.value, r.key);
        }
      }
      return out.finish();
    };
    const timers = (bytes) => {
      const b = new Batch(bytes);
      for (let i = 0; i < b.length; i++) {
        const r = b.get(i);
        curKey = r.key;
        curTs = r.timestamp;
        const domain = r.value[0] === 1 ? 'processing-time' : 'event-time';
        if (!onTimer) continue;
        try {
          onTimer(new Context(i, r.timestamp), decodeKey(r.key, this.keyType), Number(r.timestamp), domain, collector);
        } catch (e) {
          throw new RecordFailure(e, i, r.value, r.key, 'timer');
        }
      }
      return out.finish();
    };
    const id = g.keyed.length;
    g.keyed.push([process, timers]);
    const node = g.addNode('process', { tag: 'keyed-process', val: id });
    g.connect([upstream, undefined], node, 'hash');
    return new Stream(g, [node, undefined], decodeValue, false);
  }

  /** Groups each key's records into windows (Tumbling, Sliding, Session). */
  window(assigner) {
    return new WindowedStream(this, assigner);
  }
}

function keyTypeOf(k) {
  if (typeof k === 'string') return 'string';
  if (typeof k === 'number' && Number.isInteger(k)) return 'number';
  if (typeof k === 'bigint') return 'bigint';
  if (k instanceof Uint8Array) return 'bytes';
  return 'json';
}

/** A keyed stream cut into windows. */
export class WindowedStream {
  constructor(keyed, assigner) {
    this.keyed = keyed;
    this.assigner = assigner;
    this.lateness = 0;
    this.late = null;
    this.procTime = false;
  }

  /** Keeps windows open `ms` after they fire. */
  allowedLateness(ms) { this.lateness = ms; return this; }
  /** Processing-time windows. */
  processingTime() { this.procTime = true; return this; }
  /** Sends late records to `route(stream)` instead of dropping them. */
  lateRecords(route) { this.late = route; return this; }

  /** Aggregates each window with `agg` = {createAccumulator, add(acc, v) -> acc,
   *  merge(a, b), result(acc)}; `finish(key, window, result)` makes the record. */
  aggregate(agg, finish) {
    const keyed = this.keyed;
    const result = agg.result ?? ((a) => a);
    const accumulate = (accs, bytes, targets) => {
      const values = accs.map((a) => (a === undefined ? agg.createAccumulator() : decodeValue(a)));
      const b = new Batch(bytes);
      let cur = -1;
      let value;
      let raw;
      for (const [record, slot] of targets) {
        if (record !== cur) {
          cur = record;
          raw = b.get(record).value;
          value = decodeValue(raw);
        }
        try {
          values[slot] = agg.add(values[slot], value);
        } catch (e) {
          throw new RecordFailure(e, record, raw);
        }
      }
      return values.map(encodeValue);
    };
    const merge = (accs) => {
      let m;
      for (const raw of accs) {
        const a = decodeValue(raw);
        m = m === undefined ? a : agg.merge(m, a);
      }
      return encodeValue(m === undefined ? agg.createAccumulator() : m);
    };
    const emit = (fired) => {
      const out = new BatchBuilder();
      for (const f of fired) {
        const key = decodeKey(f.key, keyed.keyType);
        const r = result(decodeValue(f.accumulator));
        const win = { start: Number(f.start), end: Number(f.end) };
        out.push(f.end - 1n, f.key, encodeValue(finish ? finish(key, win, r) : r));
      }
      return out.finish();
    };
    return this.finish('aggregate', [accumulate, merge, emit, null]);
  }

  /** Runs `fn(key, window, values)` over all records of a window when it
   *  fires; returns the values to emit. */
  process(fn) {
    const keyed = this.keyed;
    const process = (fired) => {
      const out = new BatchBuilder();
      for (const w of fired) {
        const key = decodeKey(w.key, keyed.keyType);
        const b = new Batch(w.elements);
        const values = [];
        for (let i = 0; i < b.length; i++) values.push(decodeValue(b.get(i).value));
        for (const v of fn(key, { start: Number(w.start), end: Number(w.end) }, values)) {
          out.push(w.end - 1n, w.key, encodeValue(v));
        }
      }
      return out.finish();
    };
    return this.finish('process', [null, null, null, process]);
  }

  finish(mode, fns) {
    const g = this.keyed.stream.graph;
    const upstream = this.keyed.keying();
    const fn = g.windows.length;
    g.windows.push(fns);
    const node = g.addNode('window', {
      tag: 'window',
      val: {
        mode,
        assigner: this.assigner,
        allowedLatenessMs: BigInt(this.lateness),
        function: fn,
        processingTime: this.procTime,
      },
    });
    g.connect([upstream, undefined], node, 'hash');
    if (this.late) this.late(new Stream(g, [node, 'late'], decodeValue, false));
    return new Stream(g, [node, undefined], decodeValue, false);
  }
}

// ---------------------------------------------------------------- errors

function short(text) {
  return text.length <= 120 ? text : `${text.slice(0, 120)}...`;
}

/** A key for an error message: the string it encodes, else its bytes. */
function showKey(raw) {
  try {
    const key = decodeKey(raw, 'string');
    const again = encodeKey(key);
    if (again.length === raw.length && again.every((b, i) => b === raw[i])) return short(JSON.stringify(key));
  } catch (_) {
    // shown as bytes below
  }
  return short(`[${Array.from(raw).join(',')}]`);
}

/** A value for an error message: decoded if it is JSON, else its text. */
function showValue(raw) {
  try {
    return short(JSON.stringify(decodeValue(raw)));
  } catch (_) {
    return short(JSON.stringify(fromUtf8.decode(raw)));
  }
}

/** The message shown to the user for an error of job code: the error, the
 *  record that triggered it and the JavaScript stack. */
export function describe(failure) {
  const e = failure instanceof RecordFailure ? failure.error : failure;
  const lines = [];
  if (e instanceof JobError) lines.push(e.message);
  else if (e instanceof Error) lines.push(`${e.name}: ${e.message}`);
  else lines.push(String(e));
  if (failure instanceof RecordFailure) {
    let where = `  at ${failure.what} ${failure.index} of the batch`;
    if (failure.key && failure.key.length) where += `, key ${showKey(failure.key)}`;
    if (failure.what === 'record') where += `, value ${showValue(failure.value)}`;
    lines.push(where);
  }
  if (e instanceof Error && !(e instanceof JobError) && e.stack) {
    // Leave out the SDK's frames and componentize-js's generated bindings.
    const frames = e.stack
      .split('\n')
      .filter((l) => l && !l.includes('flinkw.js') && !l.includes('initializer.js'));
    if (frames.length) {
      lines.push('guest stack (JavaScript, innermost first):');
      for (const f of frames) lines.push(`  ${f}`);
    }
  }
  return lines.join('\n');
}

// ---------------------------------------------------------------- exports

let registry = null;

function call(fn, ...args) {
  try {
    return fn(...args);
  } catch (e) {
    // componentize-js turns a thrown string into the `err` of the result.
    throw describe(e);
  }
}

function lookup(table, index, what) {
  if (!registry) throw 'the host called the plugin before `plan`';
  const f = registry[table][index];
  if (!f) throw `no ${what} ${index} in this plugin`;
  return f;
}

/** `plan`: runs the job function and returns its graph. */
export const plan = {
  plan(config) {
    if (!jobFn) throw 'no job registered: call flinkw.job(fn) in the plugin module';
    const g = new Graph();
    const cfg = new Config(config);
    call(jobFn, new Env(cfg, g));
    registry = g;
    return {
      name: g.name,
      nodes: g.nodes,
      edges: g.edges,
      parallelism: g.parallelism,
      configKeys: [...cfg.read].sort(),
    };
  },
};

/** `transform.run`. */
export const transform = {
  run(chain, input) {
    return call(lookup('chains', chain, 'transform chain'), input);
  },
};

/** `keyed.process` and `keyed.on-timer`. */
export const keyed = {
  process(fn, input) {
    return call(lookup('keyed', fn, 'keyed function')[0], input);
  },
  onTimer(fn, timers) {
    return call(lookup('keyed', fn, 'keyed function')[1], timers);
  },
};

/** Guest-held state. */
export const snapshot = {
  snapshot() {
    return registry && registry.snapshot ? registry.snapshot() : new Uint8Array(0);
  },
  restore(state) {
    if (!registry) throw 'the host called the plugin before `plan`';
    if (!registry.restore) {
      if (state.length) throw 'this plugin keeps no guest state but a snapshot holds some';
      return;
    }
    call(registry.restore, state);
  },
};

function windowPart(fn, part) {
  const f = lookup('windows', fn, 'window function')[part];
  if (!f) throw part < 3 ? 'not an aggregate window function' : 'not a full window function';
  return f;
}

/** Window functions. */
export const window = {
  accumulate(fn, accumulators, input, targets) {
    return call(windowPart(fn, 0), accumulators, input, targets);
  },
  merge(fn, accumulators) {
    return call(windowPart(fn, 1), accumulators);
  },
  emit(fn, fired) {
    return call(windowPart(fn, 2), fired);
  },
  process(fn, fired) {
    return call(windowPart(fn, 3), fired);
  },
};
