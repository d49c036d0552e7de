// W5 on Apache Flink: the job of plugins/keyed-state (flinkw), ported to Flink's DataStream API.
//
// The numbers 0..count (count 0 = unbounded) at `rate` records/s (0 = as fast as it goes) are
// keyed by n % keys; each key keeps `valueBytes` pseudo-random bytes in a ValueState<byte[]>
// and each record rewrites one byte of its key's value. Nothing is emitted. Same xorshift
// bytes, same byte index ((n / 7) % valueBytes) as the flinkw plugin.
//
// Usage (built and submitted by bench/flink_w5.py):
//   flink run -c KeyedState keyed-state.jar COUNT RATE KEYS VALUE_BYTES
import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.functions.OpenContext;
import org.apache.flink.api.common.state.ValueState;
import org.apache.flink.api.common.state.ValueStateDescriptor;
import org.apache.flink.api.common.typeinfo.PrimitiveArrayTypeInfo;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.api.connector.source.util.ratelimit.RateLimiterStrategy;
import org.apache.flink.api.java.functions.KeySelector;
import org.apache.flink.connector.datagen.source.DataGeneratorSource;
import org.apache.flink.connector.datagen.source.GeneratorFunction;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.KeyedProcessFunction;
import org.apache.flink.streaming.api.functions.sink.v2.DiscardingSink;
import org.apache.flink.util.Collector;

public class KeyedState {
    /** Keeps `size` bytes per key. */
    public static class Keep extends KeyedProcessFunction<Long, Long, Long> {
        private final int size;
        private transient ValueState<byte[]> value;

        public Keep(int size) {
            this.size = size;
        }

        @Override
        public void open(OpenContext ctx) {
            value = getRuntimeContext().getState(
                    new ValueStateDescriptor<>("value", PrimitiveArrayTypeInfo.BYTE_PRIMITIVE_ARRAY_TYPE_INFO));
        }

        @Override
        public void processElement(Long n, Context ctx, Collector<Long> out) throws Exception {
            byte[] v = value.value();
            if (v == null) {
                // Pseudo-random bytes, so that compression does not shrink the state on disk.
                long x = (n * 0x9e3779b97f4a7c15L) | 1;
                v = new byte[size];
                for (int i = 0; i < size; i++) {
                    x ^= x << 13;
                    x ^= x >>> 7;
                    x ^= x << 17;
                    v[i] = (byte) x;
                }
            }
            int i = (int) Long.remainderUnsigned(n / 7, size);
            v[i]++;
            value.update(v);
        }
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 4) {
            throw new IllegalArgumentException("usage: KeyedState COUNT RATE KEYS VALUE_BYTES");
        }
        long count = Long.parseLong(args[0]);
        long rate = Long.parseLong(args[1]);
        final long keys = Long.parseLong(args[2]);
        int size = Integer.parseInt(args[3]);
        if (keys < 1 || size < 1) {
            throw new IllegalArgumentException("KEYS and VALUE_BYTES must be at least 1");
        }
        StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment();
        GeneratorFunction<Long, Long> sequence = n -> n;
        long n = count == 0 ? Long.MAX_VALUE : count;
        DataGeneratorSource<Long> source = rate > 0
                ? new DataGeneratorSource<>(sequence, n, RateLimiterStrategy.perSecond(rate), Types.LONG)
                : new DataGeneratorSource<>(sequence, n, Types.LONG);
        env.fromSource(source, WatermarkStrategy.noWatermarks(), "sequence")
                .keyBy((KeySelector<Long, Long>) x -> x % keys, Types.LONG)
                .process(new Keep(size))
                .returns(Types.LONG)
                .name("keep")
                .sinkTo(new DiscardingSink<>())
                .name("blackhole");
        env.execute("keyed-state");
    }
}
