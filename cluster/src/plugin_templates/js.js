// {{name}}: a flinkw plugin. Counts words: each word emits `word count-so-far`.
//
//   flinkw plugin build
//   flinkw test build/{{name}}.wasm --input test/input.txt --expect test/expected.txt
//
// `flinkw plugin build` puts the SDK's flinkw.js next to this file.

import * as flinkw from './flinkw.js';

export { plan, transform, keyed, snapshot, window } from './flinkw.js';

flinkw.job((env) => {
  env.setName('{{name}}');
  const count = new flinkw.ValueState('count');
  env
    .source(flinkw.File.lines(env.config.require('input')))
    .flatMap((line) => line.split(/\s+/).filter((w) => w.length > 0)).name('split-words')
    .keyBy((word) => word)
    .process((ctx, word, out) => {
      const n = (count.get(ctx) ?? 0) + 1;
      count.set(ctx, n);
      out.emit(`${word} ${n}`);
    }).name('count')
    .sink(flinkw.Stdout());
});
