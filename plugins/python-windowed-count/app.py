"""Windowed count in Python: reads events ``ts,key,value`` from a CSV and per
key and event-time window emits ``key,window_start,window_end,count,max``;
the same job, config and output as the Rust ``windowed-count`` example.

    flinkw run python-windowed-count.wasm --set input=events.csv

Config: ``window`` = tumbling (default) | sliding | session; ``size-ms``
(10000), ``slide-ms`` (5000), ``gap-ms`` (5000), ``lateness-ms`` (0),
``out-of-orderness-ms`` (1000), ``output`` (a file; default stdout),
``function`` = aggregate (default) | process, ``late-output`` (a file for
late records), ``input2`` (a second CSV, merged with ``union``).
"""

import flinkw
from flinkw.exports import Keyed, Plan, Snapshot, Transform, Window  # noqa: F401

I64_MIN = -(1 << 63)


class CountAndMax(flinkw.AggregateFunction):
    """Count and maximum value of a window: the accumulator is [count, max]."""

    def create_accumulator(self):
        return [0, I64_MIN]

    def add(self, acc, event):
        return [acc[0] + 1, max(acc[1], event["value"])]

    def merge(self, a, b):
        return [a[0] + b[0], max(a[1], b[1])]


@flinkw.job
def windowed_count(env):
    env.set_name("windowed-count")
    config = env.config
    source = config.require("input")
    size = config.get_int("size-ms", 10_000)
    lateness = config.get_int("lateness-ms", 0)
    disorder = config.get_int("out-of-orderness-ms", 1_000)
    kind = config.get("window", "tumbling")
    if kind == "tumbling":
        assigner = flinkw.Tumbling(size)
    elif kind == "sliding":
        assigner = flinkw.Sliding(size, config.get_int("slide-ms", 5_000))
    elif kind == "session":
        assigner = flinkw.Session(config.get_int("gap-ms", 5_000))
    else:
        raise flinkw.JobError(f'unknown window "{kind}": tumbling, sliding or session')
    output = config.get("output")
    late_output = config.get("late-output")
    input2 = config.get("input2")
    function = config.get("function", "aggregate")

    def timed(stream):
        # Each source gets its own watermarks; a union's is the smaller one.
        return stream.assign_timestamps(lambda e: e["ts"]).watermarks(
            flinkw.WatermarkStrategy.bounded_out_of_orderness(disorder)
        )

    events = timed(env.source(flinkw.File.csv(source)))
    if input2 is not None:
        events = events.union(timed(env.source(flinkw.File.csv(input2))))
    windows = events.key_by(lambda e: e["key"]).window(assigner).allowed_lateness(lateness)
    if late_output is not None:
        windows = windows.late_records(
            lambda late: late.map(lambda e: f"{e['ts']},{e['key']},{e['value']}").sink(
                flinkw.FileSink(late_output)
            )
        )
    if function == "aggregate":
        counts = windows.aggregate(
            CountAndMax(), lambda key, w, acc: f"{key},{w.start},{w.end},{acc[0]},{acc[1]}"
        )
    elif function == "process":

        def count_and_max(key, w, events):
            top = max((e["value"] for e in events), default=I64_MIN)
            return [f"{key},{w.start},{w.end},{len(events)},{top}"]

        counts = windows.process(count_and_max)
    else:
        raise flinkw.JobError(f'unknown function "{function}": aggregate or process')
    counts = counts.name("count-and-max")
    counts.sink(flinkw.FileSink(output) if output is not None else flinkw.Stdout())
