/* flinkw.h — the C (and C++) SDK for flinkw plugins, header-only.
 *
 * A flinkw job is one WebAssembly component. In C you describe the job graph
 * in `int flinkw_job(fw_env *env)` with function pointers for the steps, and
 * the SDK implements every export of the WIT world `job` (gen/job.h, made by
 * `wit-bindgen c`). Exactly one source file of the plugin defines
 * FLINKW_IMPLEMENTATION before including this header:
 *
 *   #define FLINKW_IMPLEMENTATION
 *   #include "flinkw.h"
 *
 *   static void upper(fw_out *out, fw_bytes line, int64_t ts) { ... fw_emit(out, v, ts); }
 *
 *   int flinkw_job(fw_env *env) {
 *     const char *input = fw_config_require(env, "input");
 *     if (!input) return 1;
 *     fw_sink_stdout(fw_map(fw_source_file(env, input, FW_TEXT), "upper", upper));
 *     return 0;
 *   }
 *
 * Build (flinkw plugin build does this):
 *   clang --target=wasm32-wasi -mexec-model=reactor -O2 -g -I sdk-c -I sdk-c/gen \
 *     app.c sdk-c/gen/job.c sdk-c/gen/job_component_type.o -o core.wasm
 *   wasm-tools component new core.wasm -o plugin.wasm   (+ --adapt if it imports WASI)
 *
 * Values are bytes (fw_bytes). Text sources give the line; CSV and JSON-lines
 * sources a JSON object (read fields with fw_json_i64 / fw_json_str); text
 * sinks write the bytes as one line. Keys written with fw_key_str /
 * fw_key_u64 are encoded like the Rust SDK's (postcard), so they land in the
 * same key groups. Records cross the boundary in packed batches
 * (fw_batch, fw_batch_builder; docs/plugin-abi.md).
 */
#ifndef FLINKW_H
#define FLINKW_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "job.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------ bytes */

/** A view of bytes (not owned). */
typedef struct { const uint8_t *ptr; size_t len; } fw_bytes;
/** A growable byte buffer (owned; free with fw_buf_free). */
typedef struct { uint8_t *ptr; size_t len, cap; } fw_buf;

static inline fw_bytes fw_str(const char *s) { fw_bytes b = {(const uint8_t *)s, strlen(s)}; return b; }
static inline fw_bytes fw_buf_bytes(const fw_buf *b) { fw_bytes r = {b->ptr, b->len}; return r; }
static inline void fw_buf_reserve(fw_buf *b, size_t extra) {
  if (b->len + extra <= b->cap) return;
  size_t cap = b->cap ? b->cap * 2 : 64;
  while (cap < b->len + extra) cap *= 2;
  b->ptr = (uint8_t *)realloc(b->ptr, cap);
  if (!b->ptr) abort();
  b->cap = cap;
}
static inline void fw_buf_push(fw_buf *b, const void *p, size_t n) {
  fw_buf_reserve(b, n);
  if (n) memcpy(b->ptr + b->len, p, n);
  b->len += n;
}
static inline void fw_buf_clear(fw_buf *b) { b->len = 0; }
static inline void fw_buf_free(fw_buf *b) { free(b->ptr); b->ptr = NULL; b->len = b->cap = 0; }
/** Appends printf-formatted text (no NUL). */
static inline void fw_buf_printf(fw_buf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n <= 0) return;
  fw_buf_reserve(b, (size_t)n + 1);
  va_start(ap, fmt);
  vsnprintf((char *)b->ptr + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
}

/* ------------------------------------------------------------ batches */

/** The timestamp of a record without event time. */
#define FW_NO_TIMESTAMP INT64_MIN

/** A packed batch, checked once, then read in place. */
typedef struct { const uint8_t *buf; size_t len; uint32_t count; size_t data; } fw_batch;
/** One record of a batch. */
typedef struct { int64_t timestamp; fw_bytes key, value; } fw_record;

static inline uint32_t fw__u32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline int64_t fw__i64(const uint8_t *p) { int64_t v; memcpy(&v, p, 8); return v; }

/** Checks `buf` as a batch; on error returns false and sets *err. */
static inline bool fw_batch_open(fw_batch *b, const uint8_t *buf, size_t len, const char **err) {
  if (len < 8) { *err = "batch shorter than its 8-byte header"; return false; }
  if (fw__u32(buf) != 1) { *err = "unknown batch version"; return false; }
  uint32_t n = fw__u32(buf + 4);
  size_t data = 8 + 16 * (size_t)n;
  if (data > len) { *err = "batch too short for its record headers"; return false; }
  uint32_t prev = 0;
  for (uint32_t i = 0; i < n; i++) {
    uint32_t k = fw__u32(buf + 8 + 16 * i + 8), v = fw__u32(buf + 8 + 16 * i + 12);
    if (!(prev <= k && k <= v && v <= len - data)) { *err = "record offsets out of order or range"; return false; }
    prev = v;
  }
  b->buf = buf; b->len = len; b->count = n; b->data = data;
  return true;
}

/** Record `i` (< count). */
static inline fw_record fw_batch_get(const fw_batch *b, uint32_t i) {
  const uint8_t *h = b->buf + 8 + 16 * (size_t)i;
  uint32_t start = i == 0 ? 0 : fw__u32(h - 16 + 12);
  uint32_t k = fw__u32(h + 8), v = fw__u32(h + 12);
  fw_record r;
  r.timestamp = fw__i64(h);
  r.key.ptr = b->buf + b->data + start; r.key.len = k - start;
  r.value.ptr = b->buf + b->data + k; r.value.len = v - k;
  return r;
}

/** Builds a batch: fw_builder_push, then fw_builder_finish. */
typedef struct { fw_buf heads, data; uint32_t count; } fw_batch_builder;

static inline void fw_builder_push(fw_batch_builder *b, int64_t ts, fw_bytes key, fw_bytes value) {
  fw_buf_push(&b->data, key.ptr, key.len);
  uint32_t k = (uint32_t)b->data.len;
  fw_buf_push(&b->data, value.ptr, value.len);
  uint32_t v = (uint32_t)b->data.len;
  fw_buf_push(&b->heads, &ts, 8);
  fw_buf_push(&b->heads, &k, 4);
  fw_buf_push(&b->heads, &v, 4);
  b->count++;
}

/** The batch, in a fresh malloc'd buffer; the builder is empty again. */
static inline void fw_builder_finish(fw_batch_builder *b, uint8_t **ptr, size_t *len) {
  size_t n = 8 + b->heads.len + b->data.len;
  uint8_t *out = (uint8_t *)malloc(n ? n : 1);
  if (!out) abort();
  uint32_t version = 1;
  memcpy(out, &version, 4);
  memcpy(out + 4, &b->count, 4);
  if (b->heads.len) memcpy(out + 8, b->heads.ptr, b->heads.len);
  if (b->data.len) memcpy(out + 8 + b->heads.len, b->data.ptr, b->data.len);
  *ptr = out; *len = n;
  b->heads.len = b->data.len = 0; b->count = 0;
}

/* ------------------------------------------------------------ keys (postcard) */

static inline void fw_varint(fw_buf *out, uint64_t v) {
  while (v >= 0x80) { uint8_t c = (uint8_t)(v | 0x80); fw_buf_push(out, &c, 1); v >>= 7; }
  uint8_t c = (uint8_t)v; fw_buf_push(out, &c, 1);
}
/** Reads a varint at *pos; false if the bytes end first. */
static inline bool fw_read_varint(fw_bytes b, size_t *pos, uint64_t *v) {
  uint64_t n = 0; unsigned shift = 0;
  while (*pos < b.len && shift < 64) {
    uint8_t c = b.ptr[(*pos)++];
    n |= (uint64_t)(c & 0x7f) << shift;
    if (c < 0x80) { *v = n; return true; }
    shift += 7;
  }
  return false;
}
/** Writes a string key, as the Rust SDK's key_by of a String does. */
static inline void fw_key_str(fw_buf *key, const void *s, size_t len) { fw_varint(key, len); fw_buf_push(key, s, len); }
/** Writes an unsigned integer key (Rust u64). */
static inline void fw_key_u64(fw_buf *key, uint64_t v) { fw_varint(key, v); }
/** Writes a signed integer key (Rust i64, zigzag). */
static inline void fw_key_i64(fw_buf *key, int64_t v) { fw_varint(key, ((uint64_t)v << 1) ^ (uint64_t)(v >> 63)); }
/** The string of a key written by fw_key_str. */
static inline fw_bytes fw_key_as_str(fw_bytes key) {
  size_t pos = 0; uint64_t n = 0; fw_bytes s = {key.ptr, 0};
  if (fw_read_varint(key, &pos, &n) && pos + n <= key.len) { s.ptr = key.ptr + pos; s.len = (size_t)n; }
  return s;
}
/** The integer of a key written by fw_key_u64. */
static inline uint64_t fw_key_as_u64(fw_bytes key) { size_t pos = 0; uint64_t v = 0; fw_read_varint(key, &pos, &v); return v; }

/** A datagen bid (postcard {auction, bidder, price: u64, ts: i64}). */
typedef struct { uint64_t auction, bidder, price; int64_t ts; } fw_bid;
static inline bool fw_bid_decode(fw_bytes v, fw_bid *bid) {
  size_t p = 0; uint64_t t;
  if (!fw_read_varint(v, &p, &bid->auction) || !fw_read_varint(v, &p, &bid->bidder) ||
      !fw_read_varint(v, &p, &bid->price) || !fw_read_varint(v, &p, &t)) return false;
  bid->ts = (int64_t)(t >> 1) ^ -(int64_t)(t & 1);
  return true;
}
static inline void fw_bid_encode(fw_buf *out, const fw_bid *bid) {
  fw_varint(out, bid->auction); fw_varint(out, bid->bidder); fw_varint(out, bid->price);
  fw_varint(out, ((uint64_t)bid->ts << 1) ^ (uint64_t)(bid->ts >> 63));
}

/* ------------------------------------------------------------ JSON fields */

/* Finds top-level field `name` of a JSON object; *at points at its value. */
static inline bool fw__json_field(fw_bytes j, const char *name, size_t *at) {
  size_t n = strlen(name), depth = 0;
  for (size_t i = 0; i < j.len; i++) {
    uint8_t c = j.ptr[i];
    if (c == '{' || c == '[') depth++;
    else if (c == '}' || c == ']') depth--;
    else if (c == '"') {
      size_t s = i + 1, e = s;
      while (e < j.len && j.ptr[e] != '"') e += (j.ptr[e] == '\\') ? 2 : 1;
      if (depth == 1 && e - s == n && memcmp(j.ptr + s, name, n) == 0) {
        size_t k = e + 1;
        while (k < j.len && (j.ptr[k] == ' ' || j.ptr[k] == ':')) k++;
        if (k > e + 1 && k < j.len) { *at = k; return true; }
      }
      i = e;
    }
  }
  return false;
}
/** The integer field `name` of a JSON object. */
static inline bool fw_json_i64(fw_bytes j, const char *name, int64_t *out) {
  size_t at;
  if (!fw__json_field(j, name, &at)) return false;
  bool neg = j.ptr[at] == '-';
  if (neg) at++;
  if (at >= j.len || j.ptr[at] < '0' || j.ptr[at] > '9') return false;
  uint64_t v = 0;
  while (at < j.len && j.ptr[at] >= '0' && j.ptr[at] <= '9') v = v * 10 + (uint64_t)(j.ptr[at++] - '0');
  *out = neg ? -(int64_t)v : (int64_t)v;
  return true;
}
/** The string field `name` of a JSON object (escapes are left as they are). */
static inline bool fw_json_str(fw_bytes j, const char *name, fw_bytes *out) {
  size_t at;
  if (!fw__json_field(j, name, &at) || j.ptr[at] != '"') return false;
  size_t e = at + 1;
  while (e < j.len && j.ptr[e] != '"') e += (j.ptr[e] == '\\') ? 2 : 1;
  if (e >= j.len) return false;
  out->ptr = j.ptr + at + 1; out->len = e - at - 1;
  return true;
}

/* ------------------------------------------------------------ the job API */

typedef struct fw_env fw_env;
typedef struct fw_stream fw_stream;
typedef struct fw_keyed fw_keyed;
typedef struct fw_windowed fw_windowed;
typedef struct fw_out fw_out;

/** What a keyed function knows about the record or timer it handles. */
typedef struct { uint32_t index; int64_t timestamp; fw_bytes key; } fw_ctx;

/** A stateless step: emit any number of values with fw_emit. */
typedef void (*fw_step_fn)(fw_out *out, fw_bytes value, int64_t ts);
/** Computes a record's event time. */
typedef int64_t (*fw_timestamp_fn)(fw_bytes value);
/** Writes a record's key (fw_key_str, fw_key_u64, ...). */
typedef void (*fw_key_fn)(fw_bytes value, fw_buf *key);
/** A keyed function. */
typedef void (*fw_process_fn)(fw_ctx *ctx, fw_bytes value, fw_out *out);
/** A timer callback; domain 0 = event time, 1 = processing time. */
typedef void (*fw_timer_fn)(fw_ctx *ctx, int64_t time, int domain, fw_out *out);

/** An incremental window aggregate; accumulators are bytes. */
typedef struct {
  void (*create)(fw_buf *acc);
  void (*add)(fw_buf *acc, fw_bytes value);
  void (*merge)(fw_buf *acc, fw_bytes other);
  /** Emits the window's result(s) with fw_emit. */
  void (*finish)(fw_out *out, fw_bytes key, int64_t start, int64_t end, fw_bytes acc);
} fw_aggregate;
/** A full window function over all records of a fired window. */
typedef void (*fw_window_fn)(fw_out *out, fw_bytes key, int64_t start, int64_t end, const fw_batch *elements);

enum fw_format { FW_TEXT, FW_CSV, FW_JSONL };

/** Emits a value downstream (ts: the record's event time, or FW_NO_TIMESTAMP). */
void fw_emit(fw_out *out, fw_bytes value, int64_t ts);
/** The timestamp of the value being handled. */
int64_t fw_out_timestamp(const fw_out *out);
/** Fails the job with a message naming the C function, file and line. */
#define FW_FAIL(out, ...) fw__fail(__func__, __FILE__, __LINE__, __VA_ARGS__)
void fw__fail(const char *fn, const char *file, int line, const char *fmt, ...);

/* config (every key read is reported to the host) */
const char *fw_config_get(fw_env *env, const char *key);
const char *fw_config_require(fw_env *env, const char *key);
int64_t fw_config_int(fw_env *env, const char *key, int64_t fallback);
/** Fails `plan` with this message; return nonzero from flinkw_job after it. */
void fw_env_fail(fw_env *env, const char *fmt, ...);
void fw_set_name(fw_env *env, const char *name);

/* sources */
fw_stream *fw_source_file(fw_env *env, const char *path, enum fw_format format);
fw_stream *fw_source_datagen_bids(fw_env *env, uint64_t count);
fw_stream *fw_source_datagen_sequence(fw_env *env, uint64_t count);

/* stateless steps (fused into one guest call per batch) */
fw_stream *fw_map(fw_stream *s, const char *name, fw_step_fn fn);
fw_stream *fw_filter(fw_stream *s, const char *name, fw_step_fn fn);
fw_stream *fw_flat_map(fw_stream *s, const char *name, fw_step_fn fn);
fw_stream *fw_timestamps(fw_stream *s, fw_timestamp_fn fn);
fw_stream *fw_watermarks_bounded(fw_stream *s, uint64_t max_out_of_orderness_ms);
fw_stream *fw_union(fw_stream *a, fw_stream *b);
fw_keyed *fw_key_by(fw_stream *s, fw_key_fn fn);

/* keyed functions and windows */
fw_stream *fw_process(fw_keyed *k, const char *name, fw_process_fn fn, fw_timer_fn on_timer);
fw_windowed *fw_window_tumbling(fw_keyed *k, int64_t size_ms);
fw_windowed *fw_window_sliding(fw_keyed *k, int64_t size_ms, int64_t slide_ms);
fw_windowed *fw_window_session(fw_keyed *k, int64_t gap_ms);
fw_windowed *fw_allowed_lateness(fw_windowed *w, uint64_t ms);
/** Late records of the window as a stream (build on it after the window's aggregate/process). */
fw_stream *fw_window_aggregate(fw_windowed *w, const char *name, const fw_aggregate *agg);
fw_stream *fw_window_process(fw_windowed *w, const char *name, fw_window_fn fn);
fw_stream *fw_late_records(fw_stream *window_output);

/* sinks */
void fw_sink_stdout(fw_stream *s);
void fw_sink_file(fw_stream *s, const char *path);
void fw_sink_blackhole(fw_stream *s);

/* keyed state of the current key (values are bytes) */
typedef struct { const char *name; int32_t handle; bool open; } fw_value_state;
#define FW_VALUE_STATE(name) {name, 0, false}
bool fw_value_get(fw_ctx *ctx, fw_value_state *st, fw_buf *out);
void fw_value_set(fw_ctx *ctx, fw_value_state *st, fw_bytes value);
void fw_value_clear(fw_ctx *ctx, fw_value_state *st);
void fw_register_event_timer(fw_ctx *ctx, int64_t time);
int64_t fw_current_watermark(void);

/* logging and metrics */
void fw_log_info(const char *fmt, ...);
void fw_counter_add(const char *name, uint64_t delta);

/** The job: implement it in the plugin; return 0, or nonzero after fw_env_fail. */
int flinkw_job(fw_env *env);

#ifdef __cplusplus
}
#endif

/* ================================================================== */
#ifdef FLINKW_IMPLEMENTATION

#define FW__MAX_STEPS 16

typedef struct { int kind; fw_step_fn step; fw_timestamp_fn ts; const char *name; } fw__step;

struct fw_stream {
  fw_env *env;
  uint32_t upstream;
  const char *side;
  fw__step steps[FW__MAX_STEPS];
  int nsteps;
  bool has_watermarks;
  uint64_t watermark_ms;
};

struct fw_keyed { fw_stream *s; fw_key_fn key; };

struct fw_windowed {
  fw_keyed *k;
  flinkw_plugin_types_window_assigner_t assigner;
  uint64_t lateness;
};

/* What the host calls by id once plan has run. */
typedef struct {
  fw__step steps[FW__MAX_STEPS];
  int nsteps;
  fw_key_fn key;
} fw__chain;
typedef struct { fw_process_fn process; fw_timer_fn timer; } fw__keyedfn;
typedef struct { const fw_aggregate *agg; fw_window_fn process; } fw__windowfn;

struct fw_env {
  const flinkw_plugin_types_settings_t *config;
  char *read[64];
  int nread;
  char *name;
  char *error;
  flinkw_plugin_types_node_t nodes[64];
  uint32_t nnodes;
  flinkw_plugin_types_edge_t edges[64];
  uint32_t nedges;
};

enum { FW__MAP, FW__FILTER, FW__FLAT_MAP, FW__KEY_BY, FW__TIMESTAMPS };

static fw__chain fw__chains[32];
static uint32_t fw__nchains;
static fw__keyedfn fw__keyed[16];
static uint32_t fw__nkeyed;
static fw__windowfn fw__windows[16];
static uint32_t fw__nwindows;
static bool fw__planned;

/* The error of the current call, if any (set by FW_FAIL). */
static fw_buf fw__error;

struct fw_out {
  fw__chain *chain;   /* a transform: the step to run next is `pos` */
  int pos;
  fw_batch_builder *batch;
  fw_buf *key;        /* key bytes of records pushed (keyed output) */
  int64_t ts;
};

static char *fw__strdup(const char *s) {
  size_t n = strlen(s);
  char *d = (char *)malloc(n + 1);
  if (!d) abort();
  memcpy(d, s, n + 1);
  return d;
}
static job_string_t fw__jstr(const char *s) { job_string_t r; job_string_dup(&r, s); return r; }

void fw__fail(const char *fn, const char *file, int line, const char *fmt, ...) {
  if (fw__error.len) return; /* keep the first */
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  fw_buf_reserve(&fw__error, (size_t)n + 1);
  va_start(ap, fmt);
  vsnprintf((char *)fw__error.ptr, (size_t)n + 1, fmt, ap);
  va_end(ap);
  fw__error.len = (size_t)n;
  fw_buf_printf(&fw__error, "\nguest stack (C):\n  %s at %s:%d", fn, file, line);
}

int64_t fw_out_timestamp(const fw_out *out) { return out->ts; }

void fw_emit(fw_out *out, fw_bytes value, int64_t ts) {
  if (out->chain && out->pos < out->chain->nsteps) {
    fw__step *st = &out->chain->steps[out->pos];
    fw_out next = *out;
    next.pos++;
    next.ts = ts;
    if (st->kind == FW__TIMESTAMPS) { next.ts = st->ts(value); fw_emit(&next, value, next.ts); }
    else st->step(&next, value, ts);
    return;
  }
  fw_bytes key = {NULL, 0};
  if (out->chain) {
    if (out->chain->key) {
      fw_buf_clear(out->key);
      out->chain->key(value, out->key);
      key = fw_buf_bytes(out->key);
    }
  } else if (out->key) {
    key = fw_buf_bytes(out->key);
  }
  fw_builder_push(out->batch, ts, key, value);
}

/* --- config */

const char *fw_config_get(fw_env *env, const char *key) {
  bool seen = false;
  for (int i = 0; i < env->nread; i++) seen |= strcmp(env->read[i], key) == 0;
  if (!seen && env->nread < 64) env->read[env->nread++] = fw__strdup(key);
  for (size_t i = 0; i < env->config->len; i++) {
    job_tuple2_string_string_t *kv = &env->config->ptr[i];
    if (kv->f0.len == strlen(key) && memcmp(kv->f0.ptr, key, kv->f0.len) == 0) {
      char *v = (char *)malloc(kv->f1.len + 1);
      memcpy(v, kv->f1.ptr, kv->f1.len);
      v[kv->f1.len] = 0;
      return v;
    }
  }
  return NULL;
}

void fw_env_fail(fw_env *env, const char *fmt, ...) {
  va_list ap;
  char buf[512];
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (!env->error) env->error = fw__strdup(buf);
}

const char *fw_config_require(fw_env *env, const char *key) {
  const char *v = fw_config_get(env, key);
  if (!v) fw_env_fail(env, "missing config `%s` (set it with --set %s=...)", key, key);
  return v;
}

int64_t fw_config_int(fw_env *env, const char *key, int64_t fallback) {
  const char *v = fw_config_get(env, key);
  if (!v) return fallback;
  char *end;
  long long n = strtoll(v, &end, 10);
  if (*v == 0 || *end != 0) { fw_env_fail(env, "bad value \"%s\" for config `%s`: not an integer", v, key); return fallback; }
  return n;
}

void fw_set_name(fw_env *env, const char *name) { free(env->name); env->name = fw__strdup(name); }

/* --- graph building */

static uint32_t fw__node(fw_env *env, const char *name, flinkw_plugin_types_node_kind_t kind) {
  if (env->nnodes >= 64) abort();
  flinkw_plugin_types_node_t *n = &env->nodes[env->nnodes];
  memset(n, 0, sizeof *n);
  n->id = env->nnodes;
  n->name = fw__jstr(name);
  n->kind = kind;
  return env->nnodes++;
}

static void fw__edge(fw_env *env, uint32_t from, const char *side, uint32_t to, uint8_t part) {
  if (env->nedges >= 64) abort();
  flinkw_plugin_types_edge_t *e = &env->edges[env->nedges++];
  memset(e, 0, sizeof *e);
  e->source = from;
  e->target = to;
  e->partitioning = part;
  if (side) { e->side_output.is_some = true; e->side_output.val = fw__jstr(side); }
}

static fw_stream *fw__stream(fw_env *env, uint32_t node, const char *side) {
  fw_stream *s = (fw_stream *)calloc(1, sizeof *s);
  s->env = env; s->upstream = node; s->side = side;
  return s;
}

static flinkw_plugin_types_connector_t fw__connector(const char *kind, int n, const char **kv) {
  flinkw_plugin_types_connector_t c;
  c.kind = fw__jstr(kind);
  c.options.len = (size_t)n;
  c.options.ptr = (job_tuple2_string_string_t *)malloc(sizeof(job_tuple2_string_string_t) * (n ? n : 1));
  for (int i = 0; i < n; i++) { c.options.ptr[i].f0 = fw__jstr(kv[2 * i]); c.options.ptr[i].f1 = fw__jstr(kv[2 * i + 1]); }
  return c;
}

static fw_stream *fw__source(fw_env *env, const char *name, const char *kind, int n, const char **kv) {
  flinkw_plugin_types_node_kind_t k;
  k.tag = FLINKW_PLUGIN_TYPES_NODE_KIND_SOURCE;
  k.val.source = fw__connector(kind, n, kv);
  return fw__stream(env, fw__node(env, name, k), NULL);
}

fw_stream *fw_source_file(fw_env *env, const char *path, enum fw_format f) {
  const char *fmt = f == FW_TEXT ? "text" : f == FW_CSV ? "csv" : "jsonl";
  const char *kv[] = {"path", path, "format", fmt};
  char name[32];
  snprintf(name, sizeof name, "file-%s", fmt);
  return fw__source(env, name, "file", 2, kv);
}

fw_stream *fw_source_datagen_bids(fw_env *env, uint64_t count) {
  char c[24];
  snprintf(c, sizeof c, "%llu", (unsigned long long)count);
  const char *kv[] = {"kind", "bids", "count", c};
  return fw__source(env, "datagen", "datagen", 2, kv);
}

fw_stream *fw_source_datagen_sequence(fw_env *env, uint64_t count) {
  char c[24];
  snprintf(c, sizeof c, "%llu", (unsigned long long)count);
  const char *kv[] = {"kind", "sequence", "count", c};
  return fw__source(env, "datagen", "datagen", 2, kv);
}

static fw_stream *fw__then(fw_stream *s, int kind, const char *name, fw_step_fn fn, fw_timestamp_fn ts) {
  if (s->nsteps >= FW__MAX_STEPS) abort();
  fw__step *st = &s->steps[s->nsteps++];
  st->kind = kind; st->step = fn; st->ts = ts; st->name = name;
  return s;
}
fw_stream *fw_map(fw_stream *s, const char *name, fw_step_fn fn) { return fw__then(s, FW__MAP, name ? name : "map", fn, NULL); }
fw_stream *fw_filter(fw_stream *s, const char *name, fw_step_fn fn) { return fw__then(s, FW__FILTER, name ? name : "filter", fn, NULL); }
fw_stream *fw_flat_map(fw_stream *s, const char *name, fw_step_fn fn) { return fw__then(s, FW__FLAT_MAP, name ? name : "flat-map", fn, NULL); }
fw_stream *fw_timestamps(fw_stream *s, fw_timestamp_fn fn) { return fw__then(s, FW__TIMESTAMPS, "timestamps", NULL, fn); }

fw_stream *fw_watermarks_bounded(fw_stream *s, uint64_t ms) {
  if (s->nsteps == 0) {
    flinkw_plugin_types_node_t *n = &s->env->nodes[s->upstream];
    n->watermarks.is_some = true;
    n->watermarks.val.strategy.tag = FLINKW_PLUGIN_TYPES_WATERMARK_STRATEGY_BOUNDED_OUT_OF_ORDERNESS;
    n->watermarks.val.strategy.val.bounded_out_of_orderness = ms;
  } else {
    s->has_watermarks = true;
    s->watermark_ms = ms;
  }
  return s;
}

/* Turns the pending steps into one transform node. */
static uint32_t fw__materialize(fw_stream *s, fw_key_fn key) {
  fw_env *env = s->env;
  if (fw__nchains >= 32) abort();
  uint32_t id = fw__nchains++;
  fw__chain *c = &fw__chains[id];
  memcpy(c->steps, s->steps, sizeof s->steps);
  c->nsteps = s->nsteps;
  c->key = key;
  int n = s->nsteps + (key ? 1 : 0);
  flinkw_plugin_types_node_kind_t k;
  k.tag = FLINKW_PLUGIN_TYPES_NODE_KIND_TRANSFORM;
  k.val.transform.chain = id;
  k.val.transform.steps.len = (size_t)n;
  k.val.transform.steps.ptr = (flinkw_plugin_types_step_t *)malloc(sizeof(flinkw_plugin_types_step_t) * (n ? n : 1));
  fw_buf name = {0};
  for (int i = 0; i < n; i++) {
    bool is_key = i == s->nsteps;
    const char *nm = is_key ? "key-by" : s->steps[i].name;
    k.val.transform.steps.ptr[i].kind = (uint8_t)(is_key ? FW__KEY_BY : s->steps[i].kind);
    k.val.transform.steps.ptr[i].name = fw__jstr(nm);
    fw_buf_printf(&name, "%s%s", i ? " -> " : "", nm);
  }
  fw_buf_push(&name, "", 1);
  uint32_t node = fw__node(env, n ? (const char *)name.ptr : "encode", k);
  fw_buf_free(&name);
  if (s->has_watermarks) {
    flinkw_plugin_types_node_t *nd = &env->nodes[node];
    nd->watermarks.is_some = true;
    nd->watermarks.val.strategy.tag = FLINKW_PLUGIN_TYPES_WATERMARK_STRATEGY_BOUNDED_OUT_OF_ORDERNESS;
    nd->watermarks.val.strategy.val.bounded_out_of_orderness = s->watermark_ms;
  }
  fw__edge(env, s->upstream, s->side, node, FLINKW_PLUGIN_TYPES_PARTITIONING_FORWARD);
  return node;
}

fw_stream *fw_union(fw_stream *a, fw_stream *b) {
  fw_env *env = a->env;
  uint32_t na = fw__materialize(a, NULL), nb = fw__materialize(b, NULL);
  uint32_t id = fw__nchains++;
  fw__chains[id].nsteps = 0;
  fw__chains[id].key = NULL;
  flinkw_plugin_types_node_kind_t k;
  k.tag = FLINKW_PLUGIN_TYPES_NODE_KIND_TRANSFORM;
  k.val.transform.chain = id;
  k.val.transform.steps.len = 0;
  k.val.transform.steps.ptr = NULL;
  uint32_t node = fw__node(env, "union", k);
  fw__edge(env, na, NULL, node, FLINKW_PLUGIN_TYPES_PARTITIONING_FORWARD);
  fw__edge(env, nb, NULL, node, FLINKW_PLUGIN_TYPES_PARTITIONING_FORWARD);
  return fw__stream(env, node, NULL);
}

fw_keyed *fw_key_by(fw_stream *s, fw_key_fn fn) {
  fw_keyed *k = (fw_keyed *)calloc(1, sizeof *k);
  k->s = s; k->key = fn;
  return k;
}

fw_stream *fw_process(fw_keyed *k, const char *name, fw_process_fn fn, fw_timer_fn on_timer) {
  fw_env *env = k->s->env;
  uint32_t up = fw__materialize(k->s, k->key);
  uint32_t id = fw__nkeyed++;
  fw__keyed[id].process = fn;
  fw__keyed[id].timer = on_timer;
  flinkw_plugin_types_node_kind_t kind;
  kind.tag = FLINKW_PLUGIN_TYPES_NODE_KIND_KEYED_PROCESS;
  kind.val.keyed_process = id;
  uint32_t node = fw__node(env, name ? name : "process", kind);
  fw__edge(env, up, NULL, node, FLINKW_PLUGIN_TYPES_PARTITIONING_HASH);
  return fw__stream(env, node, NULL);
}

static fw_windowed *fw__windowed(fw_keyed *k) {
  fw_windowed *w = (fw_windowed *)calloc(1, sizeof *w);
  w->k = k;
  return w;
}
fw_windowed *fw_window_tumbling(fw_keyed *k, int64_t size) {
  fw_windowed *w = fw__windowed(k);
  w->assigner.tag = FLINKW_PLUGIN_TYPES_WINDOW_ASSIGNER_TUMBLING;
  w->assigner.val.tumbling.size_ms = size;
  return w;
}
fw_windowed *fw_window_sliding(fw_keyed *k, int64_t size, int64_t slide) {
  fw_windowed *w = fw__windowed(k);
  w->assigner.tag = FLINKW_PLUGIN_TYPES_WINDOW_ASSIGNER_SLIDING;
  w->assigner.val.sliding.size_ms = size;
  w->assigner.val.sliding.slide_ms = slide;
  return w;
}
fw_windowed *fw_window_session(fw_keyed *k, int64_t gap) {
  fw_windowed *w = fw__windowed(k);
  w->assigner.tag = FLINKW_PLUGIN_TYPES_WINDOW_ASSIGNER_SESSION;
  w->assigner.val.session = gap;
  return w;
}
fw_windowed *fw_allowed_lateness(fw_windowed *w, uint64_t ms) { w->lateness = ms; return w; }

static fw_stream *fw__window(fw_windowed *w, const char *name, uint8_t mode, const fw_aggregate *agg, fw_window_fn fn) {
  fw_env *env = w->k->s->env;
  uint32_t up = fw__materialize(w->k->s, w->k->key);
  uint32_t id = fw__nwindows++;
  fw__windows[id].agg = agg;
  fw__windows[id].process = fn;
  flinkw_plugin_types_node_kind_t kind;
  kind.tag = FLINKW_PLUGIN_TYPES_NODE_KIND_WINDOW;
  kind.val.window.mode = mode;
  kind.val.window.assigner = w->assigner;
  kind.val.window.allowed_lateness_ms = w->lateness;
  kind.val.window.function = id;
  kind.val.window.processing_time = false;
  uint32_t node = fw__node(env, name ? name : "window", kind);
  fw__edge(env, up, NULL, node, FLINKW_PLUGIN_TYPES_PARTITIONING_HASH);
  return fw__stream(env, node, NULL);
}
fw_stream *fw_window_aggregate(fw_windowed *w, const char *name, const fw_aggregate *agg) {
  return fw__window(w, name, FLINKW_PLUGIN_TYPES_WINDOW_MODE_AGGREGATE, agg, NULL);
}
fw_stream *fw_window_process(fw_windowed *w, const char *name, fw_window_fn fn) {
  return fw__window(w, name, FLINKW_PLUGIN_TYPES_WINDOW_MODE_PROCESS, NULL, fn);
}
fw_stream *fw_late_records(fw_stream *window_output) {
  return fw__stream(window_output->env, window_output->upstream, "late");
}

static void fw__sink(fw_stream *s, const char *name, const char *kind, int n, const char **kv) {
  uint32_t up = s->nsteps || s->has_watermarks ? fw__materialize(s, NULL) : s->upstream;
  const char *side = s->nsteps || s->has_watermarks ? NULL : s->side;
  flinkw_plugin_types_node_kind_t k;
  k.tag = FLINKW_PLUGIN_TYPES_NODE_KIND_SINK;
  k.val.sink = fw__connector(kind, n, kv);
  uint32_t node = fw__node(s->env, name, k);
  fw__edge(s->env, up, side, node, FLINKW_PLUGIN_TYPES_PARTITIONING_FORWARD);
}
void fw_sink_stdout(fw_stream *s) { fw__sink(s, "stdout", "stdout", 0, NULL); }
void fw_sink_file(fw_stream *s, const char *path) { const char *kv[] = {"path", path}; fw__sink(s, "file", "file", 1, kv); }
void fw_sink_blackhole(fw_stream *s) { fw__sink(s, "blackhole", "blackhole", 0, NULL); }

/* --- state, timers, log */

bool fw_value_get(fw_ctx *ctx, fw_value_state *st, fw_buf *out) {
  if (!st->open) {
    job_string_t name = fw__jstr(st->name);
    st->handle = flinkw_plugin_state_constructor_value_state(&name, NULL).__handle;
    job_string_free(&name);
    st->open = true;
  }
  job_list_u8_t v;
  flinkw_plugin_state_borrow_value_state_t h = {st->handle};
  if (!flinkw_plugin_state_method_value_state_get(h, ctx->index, &v)) return false;
  fw_buf_clear(out);
  fw_buf_push(out, v.ptr, v.len);
  job_list_u8_free(&v);
  return true;
}
void fw_value_set(fw_ctx *ctx, fw_value_state *st, fw_bytes value) {
  if (!st->open) { fw_buf tmp = {0}; fw_value_get(ctx, st, &tmp); fw_buf_free(&tmp); }
  flinkw_plugin_state_borrow_value_state_t h = {st->handle};
  job_list_u8_t v = {(uint8_t *)value.ptr, value.len};
  flinkw_plugin_state_method_value_state_set(h, ctx->index, &v);
}
void fw_value_clear(fw_ctx *ctx, fw_value_state *st) {
  if (!st->open) { fw_buf tmp = {0}; fw_value_get(ctx, st, &tmp); fw_buf_free(&tmp); }
  flinkw_plugin_state_borrow_value_state_t h = {st->handle};
  flinkw_plugin_state_method_value_state_clear(h, ctx->index);
}
void fw_register_event_timer(fw_ctx *ctx, int64_t time) { flinkw_plugin_timers_register_event_timer(ctx->index, time); }
int64_t fw_current_watermark(void) { return flinkw_plugin_timers_current_watermark(); }

void fw_log_info(const char *fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  job_string_t m = fw__jstr(buf);
  flinkw_plugin_log_log(FLINKW_PLUGIN_LOG_LEVEL_INFO, &m);
  job_string_free(&m);
}
void fw_counter_add(const char *name, uint64_t delta) {
  job_string_t n = fw__jstr(name);
  flinkw_plugin_metrics_counter_add(&n, delta);
  job_string_free(&n);
}

/* --- errors */

static bool fw__err(job_string_t *err, const char *msg) { job_string_dup(err, msg); return false; }

/* Takes the error FW_FAIL set, adding which record triggered it. */
static bool fw__record_err(job_string_t *err, const char *what, uint32_t i, fw_record r) {
  fw_buf m = {0};
  const char *nl = memchr(fw__error.ptr, '\n', fw__error.len);
  size_t head = nl ? (size_t)(nl - (const char *)fw__error.ptr) : fw__error.len;
  fw_buf_push(&m, fw__error.ptr, head);
  fw_buf_printf(&m, "\n  at %s %u of the batch", what, i);
  if (r.key.len) {
    fw_bytes s = fw_key_as_str(r.key);
    fw_buf_printf(&m, ", key \"%.*s\"", (int)(s.len > 120 ? 120 : s.len), (const char *)s.ptr);
  }
  if (r.value.len && strcmp(what, "record") == 0)
    fw_buf_printf(&m, ", value \"%.*s\"", (int)(r.value.len > 120 ? 120 : r.value.len), (const char *)r.value.ptr);
  if (nl) fw_buf_push(&m, nl, fw__error.len - head);
  err->ptr = m.ptr; err->len = m.len;
  fw_buf_clear(&fw__error);
  return false;
}

/* --- exports */

bool exports_flinkw_plugin_plan_plan(exports_flinkw_plugin_plan_settings_t *config,
                                     exports_flinkw_plugin_plan_job_graph_t *ret, job_string_t *err) {
  fw_env *env = (fw_env *)calloc(1, sizeof *env);
  env->config = config;
  env->name = fw__strdup("job");
  fw__nchains = fw__nkeyed = fw__nwindows = 0;
  int rc = flinkw_job(env);
  exports_flinkw_plugin_plan_settings_free(config);
  if (rc != 0 || env->error) return fw__err(err, env->error ? env->error : "the job function failed");
  ret->name = fw__jstr(env->name);
  ret->nodes.len = env->nnodes;
  ret->nodes.ptr = (flinkw_plugin_types_node_t *)malloc(sizeof(flinkw_plugin_types_node_t) * env->nnodes);
  memcpy(ret->nodes.ptr, env->nodes, sizeof(flinkw_plugin_types_node_t) * env->nnodes);
  ret->edges.len = env->nedges;
  ret->edges.ptr = (flinkw_plugin_types_edge_t *)malloc(sizeof(flinkw_plugin_types_edge_t) * (env->nedges ? env->nedges : 1));
  memcpy(ret->edges.ptr, env->edges, sizeof(flinkw_plugin_types_edge_t) * env->nedges);
  ret->parallelism.is_some = false;
  ret->config_keys.len = (size_t)env->nread;
  ret->config_keys.ptr = (job_string_t *)malloc(sizeof(job_string_t) * (env->nread ? env->nread : 1));
  for (int i = 0; i < env->nread; i++) ret->config_keys.ptr[i] = fw__jstr(env->read[i]);
  fw__planned = true;
  return true;
}

static fw_batch_builder fw__out;
static fw_buf fw__key;

bool exports_flinkw_plugin_transform_run(uint32_t chain, exports_flinkw_plugin_transform_batch_t *input,
                                         exports_flinkw_plugin_transform_batch_t *ret, job_string_t *err) {
  if (!fw__planned) return fw__err(err, "the host called the plugin before `plan`");
  if (chain >= fw__nchains) return fw__err(err, "no such transform chain in this plugin");
  fw_batch b;
  const char *e;
  if (!fw_batch_open(&b, input->ptr, input->len, &e)) return fw__err(err, e);
  fw_out out = {&fw__chains[chain], 0, &fw__out, &fw__key, 0};
  for (uint32_t i = 0; i < b.count; i++) {
    fw_record r = fw_batch_get(&b, i);
    out.ts = r.timestamp;
    out.pos = 0;
    fw_emit(&out, r.value, r.timestamp);
    if (fw__error.len) { bool ok = fw__record_err(err, "record", i, r); free(input->ptr); return ok; }
  }
  free(input->ptr);
  fw_builder_finish(&fw__out, &ret->ptr, &ret->len);
  return true;
}

static bool fw__keyed_call(uint32_t function, exports_flinkw_plugin_keyed_batch_t *input,
                           exports_flinkw_plugin_keyed_batch_t *ret, job_string_t *err, bool timers) {
  if (!fw__planned) return fw__err(err, "the host called the plugin before `plan`");
  if (function >= fw__nkeyed) return fw__err(err, "no such keyed function in this plugin");
  fw_batch b;
  const char *e;
  if (!fw_batch_open(&b, input->ptr, input->len, &e)) return fw__err(err, e);
  fw__keyedfn *f = &fw__keyed[function];
  fw_out out = {NULL, 0, &fw__out, &fw__key, 0};
  for (uint32_t i = 0; i < b.count; i++) {
    fw_record r = fw_batch_get(&b, i);
    fw_buf_clear(&fw__key);
    fw_buf_push(&fw__key, r.key.ptr, r.key.len);
    out.ts = r.timestamp;
    fw_ctx ctx = {i, r.timestamp, r.key};
    if (!timers) f->process(&ctx, r.value, &out);
    else if (f->timer) f->timer(&ctx, r.timestamp, r.value.len && r.value.ptr[0] == 1, &out);
    if (fw__error.len) { bool ok = fw__record_err(err, timers ? "timer" : "record", i, r); free(input->ptr); return ok; }
  }
  free(input->ptr);
  fw_builder_finish(&fw__out, &ret->ptr, &ret->len);
  return true;
}

bool exports_flinkw_plugin_keyed_process(uint32_t function, exports_flinkw_plugin_keyed_batch_t *input,
                                         exports_flinkw_plugin_keyed_batch_t *ret, job_string_t *err) {
  return fw__keyed_call(function, input, ret, err, false);
}
bool exports_flinkw_plugin_keyed_on_timer(uint32_t function, exports_flinkw_plugin_keyed_batch_t *timers,
                                          exports_flinkw_plugin_keyed_batch_t *ret, job_string_t *err) {
  return fw__keyed_call(function, timers, ret, err, true);
}

void exports_flinkw_plugin_snapshot_snapshot(job_list_u8_t *ret) { ret->ptr = NULL; ret->len = 0; }
bool exports_flinkw_plugin_snapshot_restore(job_list_u8_t *state, job_string_t *err) {
  bool empty = state->len == 0;
  job_list_u8_free(state);
  return empty ? true : fw__err(err, "this plugin keeps no guest state but a snapshot holds some");
}

static const fw_aggregate *fw__agg(uint32_t function, job_string_t *err) {
  if (!fw__planned) { fw__err(err, "the host called the plugin before `plan`"); return NULL; }
  if (function >= fw__nwindows || !fw__windows[function].agg) { fw__err(err, "not an aggregate window function"); return NULL; }
  return fw__windows[function].agg;
}

bool exports_flinkw_plugin_window_accumulate(uint32_t function, job_list_option_list_u8_t *accs,
                                             exports_flinkw_plugin_window_batch_t *input,
                                             job_list_tuple2_u32_u32_t *targets, job_list_list_u8_t *ret,
                                             job_string_t *err) {
  const fw_aggregate *agg = fw__agg(function, err);
  if (!agg) return false;
  fw_batch b;
  const char *e;
  if (!fw_batch_open(&b, input->ptr, input->len, &e)) return fw__err(err, e);
  size_t n = accs->len;
  fw_buf *bufs = (fw_buf *)calloc(n ? n : 1, sizeof(fw_buf));
  for (size_t i = 0; i < n; i++) {
    if (accs->ptr[i].is_some) fw_buf_push(&bufs[i], accs->ptr[i].val.ptr, accs->ptr[i].val.len);
    else agg->create(&bufs[i]);
  }
  bool ok = true;
  for (size_t t = 0; t < targets->len && ok; t++) {
    uint32_t rec = targets->ptr[t].f0, slot = targets->ptr[t].f1;
    if (rec >= b.count || slot >= n) { ok = fw__err(err, "window target out of range"); break; }
    fw_record r = fw_batch_get(&b, rec);
    agg->add(&bufs[slot], r.value);
    if (fw__error.len) ok = fw__record_err(err, "record", rec, r);
  }
  job_list_option_list_u8_free(accs);
  free(input->ptr);
  free(targets->ptr);
  if (!ok) { for (size_t i = 0; i < n; i++) fw_buf_free(&bufs[i]); free(bufs); return false; }
  ret->len = n;
  ret->ptr = (job_list_u8_t *)malloc(sizeof(job_list_u8_t) * (n ? n : 1));
  for (size_t i = 0; i < n; i++) { ret->ptr[i].ptr = bufs[i].ptr; ret->ptr[i].len = bufs[i].len; }
  free(bufs);
  return true;
}

bool exports_flinkw_plugin_window_merge(uint32_t function, job_list_list_u8_t *accs, job_list_u8_t *ret, job_string_t *err) {
  const fw_aggregate *agg = fw__agg(function, err);
  if (!agg) return false;
  fw_buf m = {0};
  if (accs->len == 0) agg->create(&m);
  for (size_t i = 0; i < accs->len; i++) {
    fw_bytes a = {accs->ptr[i].ptr, accs->ptr[i].len};
    if (i == 0) fw_buf_push(&m, a.ptr, a.len);
    else agg->merge(&m, a);
  }
  job_list_list_u8_free(accs);
  ret->ptr = m.ptr; ret->len = m.len;
  return true;
}

bool exports_flinkw_plugin_window_emit(uint32_t function, exports_flinkw_plugin_window_list_fired_window_t *fired,
                                       exports_flinkw_plugin_window_batch_t *ret, job_string_t *err) {
  const fw_aggregate *agg = fw__agg(function, err);
  if (!agg) return false;
  fw_out out = {NULL, 0, &fw__out, &fw__key, 0};
  bool ok = true;
  for (size_t i = 0; i < fired->len && ok; i++) {
    exports_flinkw_plugin_window_fired_window_t *f = &fired->ptr[i];
    fw_buf_clear(&fw__key);
    fw_buf_push(&fw__key, f->key.ptr, f->key.len);
    out.ts = f->end - 1;
    fw_bytes key = {f->key.ptr, f->key.len}, acc = {f->accumulator.ptr, f->accumulator.len};
    agg->finish(&out, key, f->start, f->end, acc);
    if (fw__error.len) { fw_record r = {f->end - 1, key, acc}; ok = fw__record_err(err, "window", (uint32_t)i, r); }
  }
  exports_flinkw_plugin_window_list_fired_window_free(fired);
  if (!ok) return false;
  fw_builder_finish(&fw__out, &ret->ptr, &ret->len);
  return true;
}

bool exports_flinkw_plugin_window_process(uint32_t function, exports_flinkw_plugin_window_list_window_elements_t *fired,
                                          exports_flinkw_plugin_window_batch_t *ret, job_string_t *err) {
  if (!fw__planned) return fw__err(err, "the host called the plugin before `plan`");
  if (function >= fw__nwindows || !fw__windows[function].process) return fw__err(err, "not a full window function");
  fw_out out = {NULL, 0, &fw__out, &fw__key, 0};
  bool ok = true;
  for (size_t i = 0; i < fired->len && ok; i++) {
    exports_flinkw_plugin_window_window_elements_t *w = &fired->ptr[i];
    fw_batch b;
    const char *e;
    if (!fw_batch_open(&b, w->elements.ptr, w->elements.len, &e)) { ok = fw__err(err, e); break; }
    fw_buf_clear(&fw__key);
    fw_buf_push(&fw__key, w->key.ptr, w->key.len);
    out.ts = w->end - 1;
    fw_bytes key = {w->key.ptr, w->key.len};
    fw__windows[function].process(&out, key, w->start, w->end, &b);
    if (fw__error.len) { fw_record r = {w->end - 1, key, {NULL, 0}}; ok = fw__record_err(err, "window", (uint32_t)i, r); }
  }
  exports_flinkw_plugin_window_list_window_elements_free(fired);
  if (!ok) return false;
  fw_builder_finish(&fw__out, &ret->ptr, &ret->len);
  return true;
}

#endif /* FLINKW_IMPLEMENTATION */
#endif /* FLINKW_H */
