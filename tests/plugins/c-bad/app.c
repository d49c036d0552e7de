/* A plugin that fails on the word "boom": with `--set mode=trap` it aborts
 * (a Wasm trap: the host shows the guest's stack from the name section and
 * DWARF), otherwise it returns an error with FW_FAIL (function, file, line).
 * Either way the record that triggered it is named. */
#define FLINKW_IMPLEMENTATION
#include "flinkw.h"

static bool trap;

__attribute__((noinline)) static void explode(fw_bytes word) {
  if (trap) abort();
  FW_FAIL(NULL, "cannot handle %.*s", (int)word.len, (const char *)word.ptr);
}

static void split_words(fw_out *out, fw_bytes line, int64_t ts) {
  size_t start = 0;
  for (size_t i = 0; i <= line.len; i++) {
    if (i == line.len || line.ptr[i] == ' ') {
      fw_bytes w = {line.ptr + start, i - start};
      if (w.len) fw_emit(out, w, ts);
      start = i + 1;
    }
  }
}

static void word_key(fw_bytes word, fw_buf *key) { fw_key_str(key, word.ptr, word.len); }

static void check(fw_ctx *ctx, fw_bytes word, fw_out *out) {
  if (word.len == 4 && memcmp(word.ptr, "boom", 4) == 0) explode(word);
  fw_emit(out, word, fw_out_timestamp(out));
}

int flinkw_job(fw_env *env) {
  const char *input = fw_config_require(env, "input");
  const char *mode = fw_config_get(env, "mode");
  trap = mode && strcmp(mode, "trap") == 0;
  if (!input) return 1;
  fw_sink_stdout(fw_process(fw_key_by(fw_flat_map(fw_source_file(env, input, FW_TEXT), NULL, split_words), word_key), "check", check, NULL));
  return 0;
}
