//! A plugin's whole state as the host captured it (whole-memory capture,
//! see `plugin/capture.rs`): every core instance's linear memory and
//! mutable globals, by the name of the accessor that read them.
//!
//! Memories are stored without their zero pages: most of a guest's linear
//! memory is untouched heap, so a 64 MiB memory with 1 MiB in use takes about
//! 1 MiB in the checkpoint.

use serde::{Deserialize, Serialize};

/// Granule of the zero-page elimination: runs of this many zero bytes
/// (aligned) are left out of a stored memory.
const PAGE: usize = 4096;

/// What one accessor read: a memory or a global's value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CapturedValue {
    /// A linear memory: its length and its non-zero parts.
    Memory {
        /// Length in bytes (a multiple of the Wasm page, 64 KiB).
        len: u64,
        /// (offset, bytes) of each run of pages that are not all zero, in
        /// increasing, non-overlapping order.
        runs: Vec<(u64, Vec<u8>)>,
    },
    /// An `i32` global.
    I32(i32),
    /// An `i64` global.
    I64(i64),
    /// An `f32` global, as its bits.
    F32(u32),
    /// An `f64` global, as its bits.
    F64(u64),
}

/// A plugin instance's memories and globals at a checkpoint barrier.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryImage {
    /// The content hash of the plugin it was captured from: an image only
    /// fits the exact same code (addresses of statics, layout of the heap).
    pub plugin: String,
    /// What each accessor read, by accessor name, in the plugin's order.
    pub items: Vec<(String, CapturedValue)>,
}

/// Why a stored image cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    /// A memory's runs overlap, are out of order or reach past its length.
    #[error("memory {name} is damaged: {reason}")]
    Damaged {
        /// The accessor's name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The image does not hold what the plugin's accessors read.
    #[error("it holds {found} but the plugin has {expected}")]
    Shape {
        /// The image's items.
        found: String,
        /// The plugin's accessors.
        expected: String,
    },
}

impl CapturedValue {
    /// A memory's contents, without its zero pages.
    pub fn memory(bytes: &[u8]) -> Self {
        let mut runs: Vec<(u64, Vec<u8>)> = Vec::new();
        for (i, page) in bytes.chunks(PAGE).enumerate() {
            if page.iter().all(|b| *b == 0) {
                continue;
            }
            let offset = (i * PAGE) as u64;
            match runs.last_mut() {
                Some((start, run)) if *start + run.len() as u64 == offset => {
                    run.extend_from_slice(page)
                }
                _ => runs.push((offset, page.to_vec())),
            }
        }
        CapturedValue::Memory { len: bytes.len() as u64, runs }
    }

    /// Bytes of memory contents stored (zero pages left out).
    pub fn stored_bytes(&self) -> u64 {
        match self {
            CapturedValue::Memory { runs, .. } => runs.iter().map(|(_, r)| r.len() as u64).sum(),
            _ => 8,
        }
    }
}

impl MemoryImage {
    /// A memory's full contents (zero pages filled in), checking that its
    /// runs fit; `name` is the accessor's, for messages.
    pub fn expand(name: &str, len: u64, runs: &[(u64, Vec<u8>)]) -> Result<Vec<u8>, ImageError> {
        let damaged = |reason: String| ImageError::Damaged { name: name.to_owned(), reason };
        // A 32-bit memory is at most 4 GiB.
        if len > 1 << 32 {
            return Err(damaged(format!("a length of {len} bytes")));
        }
        let mut out = vec![0u8; len as usize];
        let mut end = 0u64;
        for (offset, bytes) in runs {
            let run_end = offset.checked_add(bytes.len() as u64).unwrap_or(u64::MAX);
            if *offset < end || run_end > len {
                return Err(damaged(format!(
                    "bytes {offset}..{run_end} overlap the previous run or pass its end {len}"
                )));
            }
            out[*offset as usize..run_end as usize].copy_from_slice(bytes);
            end = run_end;
        }
        Ok(out)
    }

    /// Checks that the image holds exactly the items `expected` names, of
    /// the right kinds (memories where memories are expected).
    pub fn check_shape(&self, expected: &[(String, bool)]) -> Result<(), ImageError> {
        let same = self.items.len() == expected.len()
            && self.items.iter().zip(expected).all(|((name, value), (want, memory))| {
                name == want && matches!(value, CapturedValue::Memory { .. }) == *memory
            });
        if same {
            return Ok(());
        }
        let describe = |items: &mut dyn Iterator<Item = (&String, bool)>| {
            let (mut memories, mut globals) = (0, 0);
            for (_, memory) in items {
                if memory { memories += 1 } else { globals += 1 }
            }
            format!("{memories} memories and {globals} globals")
        };
        let mut found =
            self.items.iter().map(|(n, v)| (n, matches!(v, CapturedValue::Memory { .. })));
        let mut want = expected.iter().map(|(n, m)| (n, *m));
        let (found, want) = (describe(&mut found), describe(&mut want));
        let (found, expected) =
            if found == want { (format!("{found} (other names)"), want) } else { (found, want) };
        Err(ImageError::Shape { found, expected })
    }

    /// Bytes of memory contents the image stores.
    pub fn stored_bytes(&self) -> u64 {
        self.items.iter().map(|(_, v)| v.stored_bytes()).sum()
    }

    /// Bytes of linear memory the image describes (zero pages included).
    pub fn memory_bytes(&self) -> u64 {
        self.items
            .iter()
            .map(|(_, v)| match v {
                CapturedValue::Memory { len, .. } => *len,
                _ => 0,
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_pages_are_left_out_and_come_back() {
        let mut memory = vec![0u8; 16 * PAGE];
        memory[10] = 1;
        memory[PAGE + 5] = 2;
        memory[9 * PAGE] = 3;
        let CapturedValue::Memory { len, runs } = CapturedValue::memory(&memory) else {
            unreachable!()
        };
        assert_eq!(len, memory.len() as u64);
        // Pages 0-1 form one run, page 9 another.
        assert_eq!(
            runs.iter().map(|(o, r)| (*o, r.len())).collect::<Vec<_>>(),
            [(0, 2 * PAGE), (9 * PAGE as u64, PAGE)]
        );
        assert_eq!(MemoryImage::expand("m", len, &runs).unwrap(), memory);
    }

    #[test]
    fn damaged_runs_are_refused_with_the_memory_named() {
        let err = MemoryImage::expand("memory0", 100, &[(90, vec![1; 20])]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "memory memory0 is damaged: bytes 90..110 overlap the previous run or pass its end 100"
        );
        let err = MemoryImage::expand("m", 100, &[(10, vec![1; 20]), (20, vec![1])]).unwrap_err();
        assert!(err.to_string().contains("overlap"), "{err}");
        assert!(MemoryImage::expand("m", 1 << 40, &[]).is_err());
    }

    #[test]
    fn an_image_of_another_shape_is_refused() {
        let image = MemoryImage {
            plugin: "h".into(),
            items: vec![
                ("m0".into(), CapturedValue::memory(&[0; 8])),
                ("g0".into(), CapturedValue::I32(7)),
            ],
        };
        let expected = [("m0".to_owned(), true), ("g0".to_owned(), false)];
        assert!(image.check_shape(&expected).is_ok());
        let err = image.check_shape(&expected[..1]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "it holds 1 memories and 1 globals but the plugin has 1 memories and 0 globals"
        );
        let renamed = [("m0".to_owned(), true), ("g1".to_owned(), false)];
        assert!(image.check_shape(&renamed).unwrap_err().to_string().contains("other names"));
    }
}
