//! Kafka: a source that reads partitions assigned to subtasks by a fixed
//! rule and keeps its offsets in flinkw's checkpoints, and a sink with
//! `none`, `at-least-once` or `exactly-once` delivery. Both work with any
//! broker that speaks the Kafka protocol (Apache Kafka, Redpanda, ...);
//! see `docs/connectors.md`.

mod assign;
mod client;
mod envelope;
mod options;
mod sink;
mod source;
mod wal;

pub use assign::owner;
pub use sink::{Delivery, KafkaSinkSpec, Oversized};
pub use source::{KafkaSourceSpec, StartFrom, TopicSelection};
