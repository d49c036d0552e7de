/* Word count in C: splits lines into words and keeps a running count per
 * word in keyed value state; each word emits "word count-so-far". The output
 * is the same as the Rust `wordcount` example's (for ASCII text: words are
 * runs of ASCII letters, digits and apostrophes, lowercased).
 *
 *   flinkw run c-wordcount.wasm --set input=examples/data/words.txt
 */
#include <ctype.h>

#define FLINKW_IMPLEMENTATION
#include "flinkw.h"

static bool is_word_char(uint8_t c) { return c == '\'' || isalnum(c) || c >= 0x80; }

/* Emits every lowercase word of a line. */
static void split_words(fw_out *out, fw_bytes line, int64_t ts) {
  char word[256];
  size_t n = 0;
  for (size_t i = 0; i <= line.len; i++) {
    if (i < line.len && is_word_char(line.ptr[i])) {
      if (n < sizeof word) word[n++] = (char)tolower(line.ptr[i]);
    } else if (n > 0) {
      fw_bytes w = {(const uint8_t *)word, n};
      fw_emit(out, w, ts);
      n = 0;
    }
  }
}

static void word_key(fw_bytes word, fw_buf *key) { fw_key_str(key, word.ptr, word.len); }

static fw_value_state count = FW_VALUE_STATE("count");

/* Adds one to the word's count and emits "word count". */
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
  fw_set_name(env, "wordcount");
  const char *input = fw_config_require(env, "input");
  if (!input) return 1;
  fw_stream *words = fw_flat_map(fw_source_file(env, input, FW_TEXT), "split-words", split_words);
  fw_sink_stdout(fw_process(fw_key_by(words, word_key), "count", count_word, NULL));
  return 0;
}
