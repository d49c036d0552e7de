// The golden outputs of tests/golden: the windowed-count job of
// plugins/windowed-count written against Apache Flink's DataStream API and
// run on a real Flink (a local MiniCluster at parallelism 1).
//
//   java Golden EVENTS.csv WINDOW SIZE_MS SLIDE_MS GAP_MS OUT_OF_ORDERNESS_MS LATENESS_MS
//
// prints `key,window_start,window_end,count,max` per window firing and
// `late,ts,key,value` per record sent to the late side output.
//
// Watermarks: Flink's BoundedOutOfOrdernessWatermarks (max timestamp - d - 1)
// emitted after every record, which is what flinkw's
// `watermark.interval-ms=0` means; Flink's own periodic emission would make
// the result depend on the wall clock.

import java.nio.file.Files;
import java.nio.file.Paths;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

import org.apache.flink.api.common.eventtime.Watermark;
import org.apache.flink.api.common.eventtime.WatermarkGenerator;
import org.apache.flink.api.common.eventtime.WatermarkOutput;
import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.functions.AggregateFunction;
import org.apache.flink.api.java.tuple.Tuple2;
import org.apache.flink.api.java.tuple.Tuple3;
import org.apache.flink.streaming.api.datastream.DataStream;
import org.apache.flink.streaming.api.datastream.SingleOutputStreamOperator;
import org.apache.flink.streaming.api.datastream.KeyedStream;
import org.apache.flink.streaming.api.datastream.WindowedStream;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.windowing.ProcessWindowFunction;
import org.apache.flink.streaming.api.windowing.assigners.EventTimeSessionWindows;
import org.apache.flink.streaming.api.windowing.assigners.SlidingEventTimeWindows;
import org.apache.flink.streaming.api.windowing.assigners.TumblingEventTimeWindows;
import org.apache.flink.streaming.api.windowing.assigners.WindowAssigner;
import org.apache.flink.streaming.api.windowing.windows.GlobalWindow;
import org.apache.flink.streaming.api.windowing.windows.TimeWindow;
import org.apache.flink.util.CloseableIterator;
import org.apache.flink.util.Collector;
import org.apache.flink.util.OutputTag;

public class Golden {
    /** ts, key, value. */
    public static class Event extends Tuple3<Long, String, Long> {
        public Event() {}

        public Event(long ts, String key, long value) {
            super(ts, key, value);
        }
    }

    /** Flink's bounded out-of-orderness watermark, after every record. */
    public static class PerRecord implements WatermarkGenerator<Event> {
        private final long delay;
        private long max;

        PerRecord(long delay) {
            this.delay = delay;
            this.max = Long.MIN_VALUE + delay + 1;
        }

        @Override
        public void onEvent(Event e, long ts, WatermarkOutput out) {
            max = Math.max(max, ts);
            out.emitWatermark(new Watermark(max - delay - 1));
        }

        @Override
        public void onPeriodicEmit(WatermarkOutput out) {}
    }

    /** Count and maximum value, incrementally. */
    public static class CountAndMax implements AggregateFunction<Event, Tuple2<Long, Long>, Tuple2<Long, Long>> {
        @Override
        public Tuple2<Long, Long> createAccumulator() {
            return Tuple2.of(0L, Long.MIN_VALUE);
        }

        @Override
        public Tuple2<Long, Long> add(Event e, Tuple2<Long, Long> acc) {
            return Tuple2.of(acc.f0 + 1, Math.max(acc.f1, e.f2));
        }

        @Override
        public Tuple2<Long, Long> getResult(Tuple2<Long, Long> acc) {
            return acc;
        }

        @Override
        public Tuple2<Long, Long> merge(Tuple2<Long, Long> a, Tuple2<Long, Long> b) {
            return Tuple2.of(a.f0 + b.f0, Math.max(a.f1, b.f1));
        }
    }

    /** `key,start,end,count,max`. */
    public static class Shape extends ProcessWindowFunction<Tuple2<Long, Long>, String, String, TimeWindow> {
        @Override
        public void process(String key, Context ctx, Iterable<Tuple2<Long, Long>> results, Collector<String> out) {
            for (Tuple2<Long, Long> r : results) {
                TimeWindow w = ctx.window();
                out.collect(key + "," + w.getStart() + "," + w.getEnd() + "," + r.f0 + "," + r.f1);
            }
        }
    }

    /** `key,count,max` of a count window. */
    public static class ShapeCount extends ProcessWindowFunction<Tuple2<Long, Long>, String, String, GlobalWindow> {
        @Override
        public void process(String key, Context ctx, Iterable<Tuple2<Long, Long>> results, Collector<String> out) {
            for (Tuple2<Long, Long> r : results) {
                out.collect(key + "," + r.f0 + "," + r.f1);
            }
        }
    }

    /** Count windows: `countWindow(size)`, or `countWindow(size, slide)` when slide > 0. */
    static void countWindows(List<Event> events, long size, long slide) throws Exception {
        StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment();
        env.setParallelism(1);
        KeyedStream<Event, String> keyed =
                env.fromData(events).keyBy(e -> e.f1, org.apache.flink.api.common.typeinfo.Types.STRING);
        WindowedStream<Event, String, GlobalWindow> windows =
                slide == 0 ? keyed.countWindow(size) : keyed.countWindow(size, slide);
        try (CloseableIterator<String> it =
                windows.aggregate(new CountAndMax(), new ShapeCount()).executeAndCollect("golden-count")) {
            while (it.hasNext()) {
                System.out.println(it.next());
            }
        }
    }

    public static void main(String[] args) throws Exception {
        List<String> lines = Files.readAllLines(Paths.get(args[0]));
        String window = args[1];
        long size = Long.parseLong(args[2]);
        long slide = Long.parseLong(args[3]);
        long gap = Long.parseLong(args[4]);
        long delay = Long.parseLong(args[5]);
        long lateness = Long.parseLong(args[6]);

        List<Event> events = new ArrayList<>();
        for (String line : lines.subList(1, lines.size())) {
            String[] f = line.split(",");
            events.add(new Event(Long.parseLong(f[0]), f[1], Long.parseLong(f[2])));
        }
        if (window.equals("count")) {
            countWindows(events, size, slide);
            return;
        }
        WindowAssigner<Object, TimeWindow> assigner;
        switch (window) {
            case "tumbling":
                assigner = TumblingEventTimeWindows.of(Duration.ofMillis(size));
                break;
            case "sliding":
                assigner = SlidingEventTimeWindows.of(Duration.ofMillis(size), Duration.ofMillis(slide));
                break;
            case "session":
                assigner = EventTimeSessionWindows.withGap(Duration.ofMillis(gap));
                break;
            default:
                throw new IllegalArgumentException("unknown window " + window);
        }

        StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment();
        env.setParallelism(1);
        OutputTag<Event> late = new OutputTag<Event>("late") {};
        DataStream<Event> timed = env.fromData(events)
                .assignTimestampsAndWatermarks(WatermarkStrategy
                        .<Event>forGenerator(ctx -> new PerRecord(delay))
                        .withTimestampAssigner((e, t) -> e.f0));
        WindowedStream<Event, String, TimeWindow> windows = timed
                .keyBy(e -> e.f1, org.apache.flink.api.common.typeinfo.Types.STRING)
                .window(assigner)
                .allowedLateness(Duration.ofMillis(lateness))
                .sideOutputLateData(late);
        SingleOutputStreamOperator<String> counts = windows.aggregate(new CountAndMax(), new Shape());
        DataStream<String> lateLines = counts.getSideOutput(late)
                .map(e -> "late," + e.f0 + "," + e.f1 + "," + e.f2)
                .returns(String.class);
        try (CloseableIterator<String> it = counts.union(lateLines).executeAndCollect("golden-" + window)) {
            while (it.hasNext()) {
                System.out.println(it.next());
            }
        }
    }
}
