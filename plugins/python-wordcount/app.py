"""Word count in Python: splits lines into words and keeps a running count
per word in keyed value state. Each word emits ``word count-so-far``; the
output is the same as the Rust ``wordcount`` example's.

    flinkw run python-wordcount.wasm --set input=examples/data/words.txt
"""

import flinkw
from flinkw.exports import Keyed, Plan, Snapshot, Transform, Window  # noqa: F401


def split_words(line):
    """Lowercase words: runs of letters, digits and apostrophes."""
    words, word = [], []
    for c in line:
        if c.isalnum() or c == "'":
            word.append(c)
        elif word:
            words.append("".join(word).lower())
            word = []
    if word:
        words.append("".join(word).lower())
    return words


@flinkw.job
def wordcount(env):
    env.set_name("wordcount")
    count = flinkw.ValueState("count")

    def counter(ctx, word, out):
        n = (count.get(ctx) or 0) + 1
        count.set(ctx, n)
        out.emit(f"{word} {n}")

    (
        env.source(flinkw.File.lines(env.config.require("input")))
        .flat_map(split_words).name("split-words")
        .key_by(lambda word: word)
        .process(counter).name("count")
        .sink(flinkw.Stdout())
    )
