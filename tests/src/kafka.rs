//! A real Kafka-compatible broker for tests: `noida-db` (installed by
//! `scripts/setup.d/30-kafka.sh`) on a free loopback port with a fresh data
//! directory, killed when dropped; and clients to create topics, produce,
//! and read everything committed. Every wait is bounded.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

/// The broker binary: `$FLINKW_NOIDA_DB`, else where the setup script puts it.
pub fn broker_binary() -> PathBuf {
    match std::env::var_os("FLINKW_NOIDA_DB") {
        Some(p) => PathBuf::from(p),
        None => {
            let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
            home.join(".cache/flinkw/bin/noida-db")
        }
    }
}

/// A free TCP port on 127.0.0.1 (free when asked; the broker binds it next).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    l.local_addr().expect("local address").port()
}

/// A record to produce: partition, key, value, timestamp.
pub type Row<'a> = (i32, Option<&'a [u8]>, &'a [u8], Option<i64>);

/// A record with headers to produce: key, value, timestamp, headers.
pub type HeadedRow<'a> = (Option<&'a [u8]>, &'a [u8], i64, Vec<(&'a str, Option<&'a [u8]>)>);

/// One record read back.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Record {
    /// The partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// The key (None: no key).
    pub key: Option<Vec<u8>>,
    /// The value.
    pub value: Vec<u8>,
    /// The timestamp (ms since the epoch), if it has one.
    pub timestamp: Option<i64>,
    /// The headers, name and value (None: a null value), in order.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Record {
    /// The value as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.value).into_owned()
    }
}

/// A running broker; killed (and its data removed) on drop.
pub struct Broker {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl Broker {
    /// Starts a broker on a free port with a fresh data directory.
    pub fn start() -> Broker {
        let dir = std::env::temp_dir().join(format!(
            "flinkw-kafka-{}-{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos() ^ rand_seed()
        ));
        std::fs::create_dir_all(&dir).expect("create the broker's data dir");
        let mut b = Broker { child: None, port: free_port(), dir };
        b.spawn();
        b
    }

    fn spawn(&mut self) {
        let bin = broker_binary();
        assert!(
            bin.exists(),
            "{} is missing: run `source scripts/setup.sh` (scripts/setup.d/30-kafka.sh installs it)",
            bin.display()
        );
        let log = std::fs::File::create(self.dir.join("broker.log")).expect("broker log");
        let child = Command::new(&bin)
            .args(["start", "--only", "kafka", "--kafka-port", &self.port.to_string()])
            .arg("--data-dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "the broker did not listen on {}", self.servers());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `host:port` for `bootstrap.servers`.
    pub fn servers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stops the broker (SIGTERM: it saves its data), bounded.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Freezes the broker for `how_long` (SIGSTOP, then SIGCONT): clients
    /// see it stop answering, as in a network partition, and nothing it
    /// acknowledged is lost.
    pub fn pause(&mut self, how_long: Duration) {
        let Some(child) = &self.child else { return };
        let pid = child.id().to_string();
        let _ = Command::new("kill").args(["-STOP", &pid]).status();
        std::thread::sleep(how_long);
        let _ = Command::new("kill").args(["-CONT", &pid]).status();
    }

    /// Starts the stopped broker again on the same port and data.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    fn config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.servers()).set("log_level", "3");
        c
    }

    /// Creates a topic with `partitions` partitions.
    pub fn create_topic(&self, name: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = self.config().create().expect("admin");
        let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let results = block_on(admin.create_topics([&topic], &opts), Duration::from_secs(20))
            .expect("create_topics timed out")
            .expect("create_topics");
        for r in results {
            r.unwrap_or_else(|(t, e)| panic!("cannot create topic {t}: {e}"));
        }
    }

    /// Adds partitions to a topic (to `total`).
    pub fn add_partitions(&self, name: &str, total: usize) {
        let admin: AdminClient<DefaultClientContext> = self.config().create().expect("admin");
        let np = rdkafka::admin::NewPartitions::new(name, total);
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let results = block_on(admin.create_partitions([&np], &opts), Duration::from_secs(20))
            .expect("create_partitions timed out")
            .expect("create_partitions");
        for r in results {
            r.unwrap_or_else(|(t, e)| panic!("cannot add partitions to {t}: {e}"));
        }
    }

    /// Produces `(partition, key, value, timestamp)` records and waits until
    /// all are acknowledged.
    pub fn produce(&self, topic: &str, records: &[Row<'_>]) {
        let producer: BaseProducer =
            self.config().set("linger.ms", "5").create().expect("producer");
        for (partition, key, value, ts) in records {
            let mut r = BaseRecord::<[u8], [u8]>::to(topic).partition(*partition).payload(*value);
            if let Some(k) = key {
                r = r.key(*k);
            }
            if let Some(ts) = ts {
                r = r.timestamp(*ts);
            }
            send(&producer, r, topic);
        }
        producer.flush(Duration::from_secs(30)).expect("flush the test producer");
    }

    /// Produces records with headers (`(name, value)`, in order; `None`: a
    /// null value) into partition `partition`, and waits until all are
    /// acknowledged.
    pub fn produce_with_headers(&self, topic: &str, partition: i32, records: &[HeadedRow<'_>]) {
        let producer: BaseProducer =
            self.config().set("linger.ms", "5").create().expect("producer");
        for (key, value, ts, headers) in records {
            let mut h = OwnedHeaders::new_with_capacity(headers.len());
            for (name, v) in headers.iter() {
                h = h.insert(Header { key: name, value: *v });
            }
            let mut r = BaseRecord::<[u8], [u8]>::to(topic)
                .partition(partition)
                .payload(*value)
                .timestamp(*ts)
                .headers(h);
            if let Some(k) = key {
                r = r.key(*k);
            }
            send(&producer, r, topic);
        }
        producer.flush(Duration::from_secs(30)).expect("flush the test producer");
    }

    /// The number of partitions of `topic`.
    pub fn partitions(&self, topic: &str) -> i32 {
        let consumer: BaseConsumer = self.config().create().expect("consumer");
        let m = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).expect("metadata");
        m.topics().first().map_or(0, |t| t.partitions().len() as i32)
    }

    /// Every committed record of `topic` (`read_committed`), read until each
    /// partition's position reaches its end; panics after `timeout` (e.g.
    /// when an open transaction holds readers back).
    pub fn read_committed(&self, topic: &str, timeout: Duration) -> Vec<Record> {
        let n = self.partitions(topic);
        let probe: BaseConsumer = self.config().create().expect("consumer");
        let ends: Vec<i64> = (0..n)
            .map(|p| {
                let (_, high) =
                    probe.fetch_watermarks(topic, p, Duration::from_secs(10)).expect("watermarks");
                high
            })
            .collect();
        // Where each partition goes on: the offset after the last record or
        // transaction marker passed.
        let mut next: Vec<i64> = vec![0; n as usize];
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        // A consumer that makes no progress for a while is replaced (seen
        // with noida-db: fetched records that never reach `poll`).
        while (0..n as usize).any(|p| next[p] < ends[p]) {
            assert!(
                Instant::now() < deadline,
                "reading {topic} read_committed did not reach the end offsets {ends:?} in \
                 {timeout:?} (at {next:?}, {} records; a transaction left open holds readers \
                 back)",
                out.len()
            );
            let consumer: BaseConsumer = self
                .config()
                .set("group.id", format!("flinkw-test-reader-{}", rand_seed()))
                .set("enable.auto.commit", "false")
                .set("isolation.level", "read_committed")
                .create()
                .expect("consumer");
            let mut tpl = TopicPartitionList::new();
            for p in 0..n {
                tpl.add_partition_offset(topic, p, Offset::Offset(next[p as usize]))
                    .expect("offset");
            }
            consumer.incremental_assign(&tpl).expect("assign");
            let mut progress = Instant::now();
            while progress.elapsed() < Duration::from_secs(3) && Instant::now() < deadline {
                match consumer.poll(Duration::from_millis(100)) {
                    Some(Ok(m)) => {
                        next[m.partition() as usize] = m.offset() + 1;
                        progress = Instant::now();
                        out.push(Record {
                            partition: m.partition(),
                            offset: m.offset(),
                            key: m.key().map(<[u8]>::to_vec),
                            value: m.payload().unwrap_or_default().to_vec(),
                            timestamp: m.timestamp().to_millis(),
                            headers: m.headers().map_or_else(Vec::new, |h| {
                                h.iter()
                                    .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                                    .collect()
                            }),
                        });
                    }
                    Some(Err(e)) => eprintln!("test reader: {e}"),
                    None => {}
                }
                if let Ok(pos) = consumer.position() {
                    for p in 0..n {
                        if let Some(Offset::Offset(o)) =
                            pos.find_partition(topic, p).map(|e| e.offset())
                            && o > next[p as usize]
                        {
                            next[p as usize] = o;
                            progress = Instant::now();
                        }
                    }
                }
                if (0..n as usize).all(|p| next[p] >= ends[p]) {
                    break;
                }
            }
        }
        out.sort();
        out
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn rand_seed() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs a future (the admin client's) to completion on this thread; `None`
/// after `timeout`.
pub fn block_on<F: std::future::Future>(f: F, timeout: Duration) -> Option<F::Output> {
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    let deadline = Instant::now() + timeout;
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return Some(v);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        std::thread::park_timeout((deadline - now).min(Duration::from_millis(50)));
    }
}

/// Sends `record`, retrying for up to 30 s while the producer's queue is
/// full; panics naming `topic` after that.
fn send(producer: &BaseProducer, mut record: BaseRecord<'_, [u8], [u8]>, topic: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err((e, back)) = producer.send(record) {
        assert!(Instant::now() < deadline, "cannot produce to {topic}: {e}");
        record = back;
        producer.poll(Duration::from_millis(10));
    }
}
