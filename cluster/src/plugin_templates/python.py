"""{{name}}: a flinkw plugin. Counts words: each word emits ``word count-so-far``.

    flinkw plugin build
    flinkw test build/{{name}}.wasm --input test/input.txt --expect test/expected.txt
"""

import flinkw
from flinkw.exports import Keyed, Plan, Snapshot, Transform, Window  # noqa: F401


@flinkw.job
def job(env):
    env.set_name("{{name}}")
    count = flinkw.ValueState("count")

    def count_word(ctx, word, out):
        n = (count.get(ctx) or 0) + 1
        count.set(ctx, n)
        out.emit(f"{word} {n}")

    (
        env.source(flinkw.File.lines(env.config.require("input")))
        .flat_map(str.split).name("split-words")
        .key_by(lambda word: word)
        .process(count_word).name("count")
        .sink(flinkw.Stdout())
    )
