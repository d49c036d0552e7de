/* Windowed count in C: reads events `ts,key,value` from a CSV and per key
 * and event-time window emits `key,window_start,window_end,count,max`; the
 * same job, config and output as the Rust `windowed-count` example.
 *
 *   flinkw run c-windowed-count.wasm --set input=events.csv
 *
 * Config: window = tumbling (default) | sliding | session; size-ms (10000),
 * slide-ms (5000), gap-ms (5000), lateness-ms (0), out-of-orderness-ms
 * (1000), output (a file; default stdout), function = aggregate (default) |
 * process, late-output (a file for late records), input2 (a second CSV,
 * merged with union).
 */
#define FLINKW_IMPLEMENTATION
#include "flinkw.h"

/* A CSV row arrives as a JSON object: {"ts":...,"key":"...","value":...}. */
static int64_t event_time(fw_bytes row) {
  int64_t ts = 0;
  if (!fw_json_i64(row, "ts", &ts)) FW_FAIL(NULL, "row has no integer field ts");
  return ts;
}

static void event_key(fw_bytes row, fw_buf *key) {
  fw_bytes k;
  if (!fw_json_str(row, "key", &k)) { FW_FAIL(NULL, "row has no string field key"); return; }
  fw_key_str(key, k.ptr, k.len);
}

/* The accumulator: u64 count and i64 max, 16 bytes. */
typedef struct { uint64_t count; int64_t max; } count_max;

static void acc_create(fw_buf *acc) {
  count_max c = {0, INT64_MIN};
  fw_buf_clear(acc);
  fw_buf_push(acc, &c, sizeof c);
}

static void acc_add(fw_buf *acc, fw_bytes row) {
  count_max c;
  int64_t v;
  memcpy(&c, acc->ptr, sizeof c);
  if (!fw_json_i64(row, "value", &v)) { FW_FAIL(NULL, "row has no integer field value"); return; }
  c.count++;
  if (v > c.max) c.max = v;
  memcpy(acc->ptr, &c, sizeof c);
}

static void acc_merge(fw_buf *acc, fw_bytes other) {
  count_max a, b;
  memcpy(&a, acc->ptr, sizeof a);
  memcpy(&b, other.ptr, sizeof b);
  a.count += b.count;
  if (b.max > a.max) a.max = b.max;
  memcpy(acc->ptr, &a, sizeof a);
}

static void emit_line(fw_out *out, fw_bytes key, int64_t start, int64_t end, uint64_t count, int64_t max) {
  static fw_buf line;
  fw_bytes k = fw_key_as_str(key);
  fw_buf_clear(&line);
  fw_buf_printf(&line, "%.*s,%lld,%lld,%llu,%lld", (int)k.len, (const char *)k.ptr, (long long)start,
                (long long)end, (unsigned long long)count, (long long)max);
  fw_emit(out, fw_buf_bytes(&line), end - 1);
}

static void acc_finish(fw_out *out, fw_bytes key, int64_t start, int64_t end, fw_bytes acc) {
  count_max c;
  memcpy(&c, acc.ptr, sizeof c);
  emit_line(out, key, start, end, c.count, c.max);
}

static const fw_aggregate count_and_max = {acc_create, acc_add, acc_merge, acc_finish};

/* The same result as a full window function over all the window's rows. */
static void window_count(fw_out *out, fw_bytes key, int64_t start, int64_t end, const fw_batch *rows) {
  int64_t max = INT64_MIN, v;
  for (uint32_t i = 0; i < rows->count; i++) {
    if (fw_json_i64(fw_batch_get(rows, i).value, "value", &v) && v > max) max = v;
  }
  emit_line(out, key, start, end, rows->count, max);
}

/* A late row back as `ts,key,value`. */
static void late_line(fw_out *out, fw_bytes row, int64_t ts) {
  static fw_buf line;
  int64_t t = 0, v = 0;
  fw_bytes k = {NULL, 0};
  fw_json_i64(row, "ts", &t);
  fw_json_i64(row, "value", &v);
  fw_json_str(row, "key", &k);
  fw_buf_clear(&line);
  fw_buf_printf(&line, "%lld,%.*s,%lld", (long long)t, (int)k.len, (const char *)k.ptr, (long long)v);
  fw_emit(out, fw_buf_bytes(&line), ts);
}

int flinkw_job(fw_env *env) {
  fw_set_name(env, "windowed-count");
  const char *input = fw_config_require(env, "input");
  int64_t size = fw_config_int(env, "size-ms", 10000);
  int64_t lateness = fw_config_int(env, "lateness-ms", 0);
  int64_t disorder = fw_config_int(env, "out-of-orderness-ms", 1000);
  const char *kind = fw_config_get(env, "window");
  int64_t slide = fw_config_int(env, "slide-ms", 5000);
  int64_t gap = fw_config_int(env, "gap-ms", 5000);
  const char *output = fw_config_get(env, "output");
  const char *late_output = fw_config_get(env, "late-output");
  const char *input2 = fw_config_get(env, "input2");
  const char *function = fw_config_get(env, "function");
  if (!input) return 1;
  if (!function) function = "aggregate";
  if (strcmp(function, "aggregate") != 0 && strcmp(function, "process") != 0) {
    fw_env_fail(env, "unknown function \"%s\": aggregate or process", function);
    return 1;
  }

  /* Each source gets its own watermarks; a union's is the smaller one. */
  fw_stream *events = fw_watermarks_bounded(fw_timestamps(fw_source_file(env, input, FW_CSV), event_time), disorder);
  if (input2) {
    fw_stream *more = fw_watermarks_bounded(fw_timestamps(fw_source_file(env, input2, FW_CSV), event_time), disorder);
    events = fw_union(events, more);
  }
  fw_keyed *keyed = fw_key_by(events, event_key);
  fw_windowed *windows;
  if (!kind || strcmp(kind, "tumbling") == 0) windows = fw_window_tumbling(keyed, size);
  else if (strcmp(kind, "sliding") == 0) windows = fw_window_sliding(keyed, size, slide);
  else if (strcmp(kind, "session") == 0) windows = fw_window_session(keyed, gap);
  else {
    fw_env_fail(env, "unknown window \"%s\": tumbling, sliding or session", kind);
    return 1;
  }
  fw_allowed_lateness(windows, (uint64_t)lateness);
  fw_stream *counts = strcmp(function, "aggregate") == 0
                          ? fw_window_aggregate(windows, "count-and-max", &count_and_max)
                          : fw_window_process(windows, "count-and-max", window_count);
  if (late_output) fw_sink_file(fw_map(fw_late_records(counts), "map", late_line), late_output);
  if (output) fw_sink_file(counts, output);
  else fw_sink_stdout(counts);
  return 0;
}
