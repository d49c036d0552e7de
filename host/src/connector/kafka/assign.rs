//! Which subtask reads which partition: a fixed rule, the same in every
//! process and run, so no consumer-group coordination is needed.
//!
//! As Flink's `KafkaTopicPartitionAssigner`: a topic's partitions go round
//! robin over the subtasks, starting at a subtask picked by the topic's
//! hash, so the partitions 0 of many topics do not all land on subtask 0.
//! A partition added later gets an owner without moving any other.

/// The subtask (of `parallelism`) that reads `partition` of `topic`.
pub fn owner(topic: &str, partition: i32, parallelism: u32) -> u32 {
    let parallelism = parallelism.max(1) as u64;
    // FNV-1a: stable across builds and platforms (unlike std's hasher).
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for b in topic.as_bytes() {
        h = (h ^ *b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    let start = h % parallelism;
    ((start + partition.max(0) as u64) % parallelism) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_partitions_evenly_and_stably() {
        for p in 1..=5u32 {
            let mut counts = vec![0; p as usize];
            for partition in 0..(3 * p as i32) {
                counts[owner("orders", partition, p) as usize] += 1;
            }
            assert!(counts.iter().all(|c| *c == 3), "{p}: {counts:?}");
        }
        assert_eq!(owner("orders", 7, 4), owner("orders", 7, 4));
        // Consecutive partitions go to consecutive subtasks.
        assert_eq!((owner("t", 0, 3) + 1) % 3, owner("t", 1, 3));
    }
}
