/* Nexmark W1 in C (see plugins/nexmark-w1): `count` bids from the host's
 * datagen source, q1 (the price in euros, price * 908 / 1000) and q2 (bids
 * of every 123rd auction), fused into one guest call per batch, into a
 * blackhole sink. Bids keep their postcard encoding, as in the Rust plugin.
 *
 *   flinkw run c-nexmark-w1.wasm --set count=20000000
 */
#define FLINKW_IMPLEMENTATION
#include "flinkw.h"

static void q1(fw_out *out, fw_bytes value, int64_t ts) {
  static fw_buf buf;
  fw_bid bid;
  if (!fw_bid_decode(value, &bid)) { FW_FAIL(out, "not a bid"); return; }
  bid.price = bid.price * 908 / 1000;
  fw_buf_clear(&buf);
  fw_bid_encode(&buf, &bid);
  fw_emit(out, fw_buf_bytes(&buf), ts);
}

static void q2(fw_out *out, fw_bytes value, int64_t ts) {
  fw_bid bid;
  if (fw_bid_decode(value, &bid) && bid.auction % 123 == 0) fw_emit(out, value, ts);
}

int flinkw_job(fw_env *env) {
  fw_set_name(env, "nexmark-w1");
  int64_t count = fw_config_int(env, "count", 20000000);
  fw_stream *bids = fw_source_datagen_bids(env, (uint64_t)count);
  fw_sink_blackhole(fw_filter(fw_map(bids, "q1-euros", q1), "q2-auction-mod-123", q2));
  return 0;
}
