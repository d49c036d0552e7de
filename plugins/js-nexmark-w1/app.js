// Nexmark W1 in JavaScript (see plugins/nexmark-w1): `count` bids from the
// host's datagen source, q1 (the price in euros) and q2 (bids of every 123rd
// auction), fused into one guest call per batch, into a blackhole sink.
//
//   flinkw run js-nexmark-w1.wasm --set count=1000000

import * as flinkw from './flinkw.js';

export { plan, transform, keyed, snapshot, window } from './flinkw.js';

flinkw.job((env) => {
  env.setName('nexmark-w1');
  const count = env.config.getInt('count', 20000000);
  env
    .source(flinkw.Datagen.bids(count))
    .map((bid) => ({ ...bid, price: Math.floor((bid.price * 908) / 1000) })).name('q1-euros')
    .filter((bid) => bid.auction % 123 === 0).name('q2-auction-mod-123')
    .sink(flinkw.Blackhole());
});
