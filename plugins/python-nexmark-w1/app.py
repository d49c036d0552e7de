"""Nexmark W1 in Python (see plugins/nexmark-w1): ``count`` bids from the
host's datagen source, q1 (the price in euros, ``price * 908 // 1000``) and
q2 (bids of every 123rd auction), fused into one guest call per batch, into
a blackhole sink.

    flinkw run python-nexmark-w1.wasm --set count=1000000
"""

import flinkw
from flinkw.exports import Keyed, Plan, Snapshot, Transform, Window  # noqa: F401


def q1(bid):
    bid.price = bid.price * 908 // 1000
    return bid


@flinkw.job
def job(env):
    env.set_name("nexmark-w1")
    count = env.config.get_int("count", 20_000_000)
    (
        env.source(flinkw.Datagen.bids(count))
        .map(q1).name("q1-euros")
        .filter(lambda bid: bid.auction % 123 == 0).name("q2-auction-mod-123")
        .sink(flinkw.Blackhole())
    )
