/* {{name}}: a flinkw plugin. Counts words: each word emits "word count-so-far".
 *
 *   flinkw plugin build
 *   flinkw test build/{{name}}.wasm --input test/input.txt --expect test/expected.txt
 */
#define FLINKW_IMPLEMENTATION
#include "flinkw.h"

/* Emits every space-separated word of a line. */
static void split_words(fw_out *out, fw_bytes line, int64_t ts) {
  size_t start = 0;
  for (size_t i = 0; i <= line.len; i++) {
    if (i == line.len || line.ptr[i] == ' ' || line.ptr[i] == '\t') {
      if (i > start) {
        fw_bytes word = {line.ptr + start, i - start};
        fw_emit(out, word, ts);
      }
      start = i + 1;
    }
  }
}

static void word_key(fw_bytes word, fw_buf *key) { fw_key_str(key, word.ptr, word.len); }

static fw_value_state count = FW_VALUE_STATE("count");

static void count_word(fw_ctx *ctx, fw_bytes word, fw_out *out) {
  static fw_buf state, line;
  uint64_t n = 0;
  if (fw_value_get(ctx, &count, &state) && state.len == 8) memcpy(&n, state.ptr, 8);
  n++;
  fw_bytes v = {(const uint8_t *)&n, 8};
  fw_value_set(ctx, &count, v);
  fw_buf_clear(&line);
  fw_buf_printf(&line, "%.*s %llu", (int)word.len, (const char *)word.ptr, (unsigned long long)n);
  fw_emit(out, fw_buf_bytes(&line), fw_out_timestamp(out));
}

int flinkw_job(fw_env *env) {
  fw_set_name(env, "{{name}}");
  const char *input = fw_config_require(env, "input");
  if (!input) return 1;
  fw_stream *words = fw_flat_map(fw_source_file(env, input, FW_TEXT), "split-words", split_words);
  fw_sink_stdout(fw_process(fw_key_by(words, word_key), "count", count_word, NULL));
  return 0;
}
