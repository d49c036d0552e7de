"""A plugin that fails on the word "boom": its error must show the Python
stack (function names, file and line) and the record that triggered it."""

import flinkw
from flinkw.exports import Keyed, Plan, Snapshot, Transform, Window  # noqa: F401


def explode(word):
    raise ValueError(f"cannot handle {word}")


def check(word):
    if word == "boom":
        explode(word)
    return word


@flinkw.job
def job(env):
    count = flinkw.ValueState("count")

    def counter(ctx, word, out):
        n = (count.get(ctx) or 0) + 1
        count.set(ctx, n)
        out.emit(f"{check(word)} {n}")

    (
        env.source(flinkw.File.lines(env.config.require("input")))
        .flat_map(str.split)
        .key_by(lambda w: w)
        .process(counter)
        .sink(flinkw.Stdout())
    )
