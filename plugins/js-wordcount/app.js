// Word count in JavaScript: splits lines into words and keeps a running
// count per word in keyed value state; each word emits `word count-so-far`.
// The output is the same as the Rust `wordcount` example's.
//
//   flinkw run js-wordcount.wasm --set input=examples/data/words.txt

import * as flinkw from './flinkw.js';

export { plan, transform, keyed, snapshot, window } from './flinkw.js';

/** A letter, digit or apostrophe. (StarlingMonkey has no Unicode property
 *  escapes in regular expressions: a letter is a character with case.) */
const isWordChar = (c) =>
  c === "'" || (c >= '0' && c <= '9') || c.toLowerCase() !== c.toUpperCase();

/** Lowercase words: runs of letters, digits and apostrophes. */
function splitWords(line) {
  const words = [];
  let word = '';
  for (const c of line) {
    if (isWordChar(c)) word += c;
    else if (word) {
      words.push(word.toLowerCase());
      word = '';
    }
  }
  if (word) words.push(word.toLowerCase());
  return words;
}

flinkw.job((env) => {
  env.setName('wordcount');
  const count = new flinkw.ValueState('count');
  env
    .source(flinkw.File.lines(env.config.require('input')))
    .flatMap(splitWords).name('split-words')
    .keyBy((word) => word)
    .process((ctx, word, out) => {
      const n = (count.get(ctx) ?? 0) + 1;
      count.set(ctx, n);
      out.emit(`${word} ${n}`);
    }).name('count')
    .sink(flinkw.Stdout());
});
