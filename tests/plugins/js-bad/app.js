// A plugin that fails on the word "boom": its error must show the JS stack
// (function names, file and line) and the record that triggered it.
import * as flinkw from './flinkw.js';

export { plan, transform, keyed, snapshot, window } from './flinkw.js';

function explode(word) {
  throw new Error(`cannot handle ${word}`);
}

function check(word) {
  if (word === 'boom') explode(word);
  return word;
}

flinkw.job((env) => {
  const count = new flinkw.ValueState('count');
  env
    .source(flinkw.File.lines(env.config.require('input')))
    .flatMap((line) => line.split(' ').filter((w) => w))
    .keyBy((w) => w)
    .process(function counter(ctx, word, out) {
      const n = (count.get(ctx) ?? 0) + 1;
      count.set(ctx, n);
      out.emit(`${check(word)} ${n}`);
    })
    .sink(flinkw.Stdout());
});
