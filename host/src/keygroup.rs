//! Key groups: how keys map to subtasks, as in Flink.
//!
//! A key's bytes hash to one of `max_parallelism` key groups; the key groups
//! are split into contiguous ranges, one per subtask. Because the number of
//! key groups is fixed for a job, state can later be redistributed to a new
//! parallelism by moving whole key groups.

/// Flink's default max parallelism for small jobs.
pub const DEFAULT_MAX_PARALLELISM: u32 = 128;

/// The key group of `key` (`murmur3_32(key) % max_parallelism`).
pub fn key_group(key: &[u8], max_parallelism: u32) -> u32 {
    murmur3_32(key, 0) % max_parallelism
}

/// The subtask that owns `key_group` at `parallelism` (Flink's formula).
pub fn subtask_for_key_group(key_group: u32, max_parallelism: u32, parallelism: u32) -> u32 {
    (key_group as u64 * parallelism as u64 / max_parallelism as u64) as u32
}

/// The subtask that owns `key`.
pub fn subtask_for_key(key: &[u8], max_parallelism: u32, parallelism: u32) -> u32 {
    subtask_for_key_group(key_group(key, max_parallelism), max_parallelism, parallelism)
}

/// The key groups `[start, end]` that subtask `index` owns.
pub fn key_group_range(index: u32, max_parallelism: u32, parallelism: u32) -> (u32, u32) {
    let (i, m, p) = (index as u64, max_parallelism as u64, parallelism as u64);
    let start = (i * m).div_ceil(p);
    let end = ((i + 1) * m).div_ceil(p) - 1;
    (start as u32, end as u32)
}

/// MurmurHash3, x86 32-bit: stable across platforms and releases.
pub fn murmur3_32(data: &[u8], seed: u32) -> u32 {
    const C1: u32 = 0xcc9e_2d51;
    const C2: u32 = 0x1b87_3593;
    let mut h = seed;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        h ^= k;
        h = h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        let mut k = 0u32;
        for (i, b) in tail.iter().enumerate() {
            k |= (*b as u32) << (8 * i);
        }
        k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        h ^= k;
    }
    h ^= data.len() as u32;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur_matches_reference_vectors() {
        assert_eq!(murmur3_32(b"", 0), 0);
        assert_eq!(murmur3_32(b"", 1), 0x514e_28b7);
        assert_eq!(murmur3_32(b"hello", 0), 0x248b_fa47);
        assert_eq!(murmur3_32(b"The quick brown fox jumps over the lazy dog", 0), 0x2e4f_f723);
    }

    #[test]
    fn ranges_cover_all_key_groups_and_agree_with_assignment() {
        for p in 1..=7 {
            let mut next = 0;
            for i in 0..p {
                let (s, e) = key_group_range(i, 128, p);
                assert_eq!(s, next);
                for kg in s..=e {
                    assert_eq!(subtask_for_key_group(kg, 128, p), i);
                }
                next = e + 1;
            }
            assert_eq!(next, 128);
        }
    }

    #[test]
    fn keys_spread_over_subtasks() {
        let mut counts = [0u32; 4];
        for i in 0..4000u32 {
            counts[subtask_for_key(&i.to_le_bytes(), 128, 4) as usize] += 1;
        }
        assert!(counts.iter().all(|c| *c > 700), "{counts:?}");
    }
}
