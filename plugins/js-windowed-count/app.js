// Windowed count in JavaScript: reads events `ts,key,value` from a CSV and
// per key and event-time window emits `key,window_start,window_end,count,max`;
// the same job, config and output as the Rust `windowed-count` example.
//
//   flinkw run js-windowed-count.wasm --set input=events.csv
//
// Config: window = tumbling (default) | sliding | session; size-ms (10000),
// slide-ms (5000), gap-ms (5000), lateness-ms (0), out-of-orderness-ms
// (1000), output (a file; default stdout), function = aggregate (default) |
// process, late-output (a file for late records), input2 (a second CSV,
// merged with union).

import * as flinkw from './flinkw.js';

export { plan, transform, keyed, snapshot, window } from './flinkw.js';

const I64_MIN = '-9223372036854775808';

/** Count and maximum value of a window; the accumulator is [count, max]. */
const countAndMax = {
  createAccumulator: () => [0, null],
  add: ([n, max], e) => [n + 1, max === null ? e.value : Math.max(max, e.value)],
  merge: (a, b) => [a[0] + b[0], a[1] === null ? b[1] : b[1] === null ? a[1] : Math.max(a[1], b[1])],
};

flinkw.job((env) => {
  env.setName('windowed-count');
  const config = env.config;
  const input = config.require('input');
  const size = config.getInt('size-ms', 10000);
  const lateness = config.getInt('lateness-ms', 0);
  const disorder = config.getInt('out-of-orderness-ms', 1000);
  const kind = config.get('window', 'tumbling');
  let assigner;
  if (kind === 'tumbling') assigner = flinkw.Tumbling(size);
  else if (kind === 'sliding') assigner = flinkw.Sliding(size, config.getInt('slide-ms', 5000));
  else if (kind === 'session') assigner = flinkw.Session(config.getInt('gap-ms', 5000));
  else throw new flinkw.JobError(`unknown window "${kind}": tumbling, sliding or session`);
  const output = config.get('output');
  const lateOutput = config.get('late-output');
  const input2 = config.get('input2');
  const fn = config.get('function', 'aggregate');

  // Each source gets its own watermarks; a union's is the smaller one.
  const timed = (stream) =>
    stream
      .assignTimestamps((e) => e.ts)
      .watermarks(flinkw.WatermarkStrategy.boundedOutOfOrderness(disorder));
  let events = timed(env.source(flinkw.File.csv(input)));
  if (input2 !== undefined) events = events.union(timed(env.source(flinkw.File.csv(input2))));
  let windows = events.keyBy((e) => e.key).window(assigner).allowedLateness(lateness);
  if (lateOutput !== undefined) {
    windows = windows.lateRecords((late) =>
      late.map((e) => `${e.ts},${e.key},${e.value}`).sink(flinkw.FileSink(lateOutput)),
    );
  }
  let counts;
  if (fn === 'aggregate') {
    counts = windows.aggregate(countAndMax, (key, w, [n, max]) =>
      `${key},${w.start},${w.end},${n},${max ?? I64_MIN}`);
  } else if (fn === 'process') {
    counts = windows.process((key, w, events) => {
      const max = events.length ? Math.max(...events.map((e) => e.value)) : I64_MIN;
      return [`${key},${w.start},${w.end},${events.length},${max}`];
    });
  } else {
    throw new flinkw.JobError(`unknown function "${fn}": aggregate or process`);
  }
  counts.name('count-and-max').sink(output !== undefined ? flinkw.FileSink(output) : flinkw.Stdout());
});
