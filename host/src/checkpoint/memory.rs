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
        runs: Vec<(u64, Bytes)>,
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

/// Bytes that serialize as one block (`serialize_bytes`: a length and a
/// copy in postcard), not as a sequence of single bytes: a 64 MiB memory
/// encodes and decodes at memcpy speed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bytes(pub Vec<u8>);

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl Serialize for Bytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Bytes;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
                Ok(Bytes(v.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
                Ok(Bytes(v))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Bytes, A::Error> {
                let mut v = Vec::new();
                while let Some(b) = a.next_element()? {
                    v.push(b);
                }
                Ok(Bytes(v))
            }
        }
        d.deserialize_byte_buf(Visitor)
    }
}

/// Whether a page is all zero, 16 bytes at a time (vectorized).
fn is_zero(page: &[u8]) -> bool {
    let mut chunks = page.chunks_exact(16);
    let wide = chunks
        .by_ref()
        .fold(0u128, |acc, c| acc | u128::from_ne_bytes(c.try_into().unwrap_or([0; 16])));
    wide == 0 && chunks.remainder().iter().all(|b| *b == 0)
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
        // Find the runs first, then copy each once.
        let mut ranges: Vec<(usize, usize)> = Vec::new();
        for (i, page) in bytes.chunks(PAGE).enumerate() {
            if is_zero(page) {
                continue;
            }
            let (start, end) = (i * PAGE, i * PAGE + page.len());
            match ranges.last_mut() {
                Some((_, e)) if *e == start => *e = end,
                _ => ranges.push((start, end)),
            }
        }
        let runs =
            ranges.into_iter().map(|(s, e)| (s as u64, Bytes(bytes[s..e].to_vec()))).collect();
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
    pub fn expand(name: &str, len: u64, runs: &[(u64, Bytes)]) -> Result<Vec<u8>, ImageError> {
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
        // Memories travel as blocks of bytes, and come back the same.
        let image = MemoryImage {
            plugin: "h".into(),
            items: vec![("m".into(), CapturedValue::memory(&memory))],
        };
        let encoded = postcard::to_allocvec(&image).unwrap();
        assert!(encoded.len() < 3 * PAGE + 64, "{} bytes", encoded.len());
        assert_eq!(postcard::from_bytes::<MemoryImage>(&encoded).unwrap(), image);
        assert!(
            is_zero(&[0; 33]) && !is_zero(&[0, 0, 1]) && !is_zero(&[[0; 32], [1; 32]].concat())
        );
    }

    #[test]
    fn damaged_runs_are_refused_with_the_memory_named() {
        let err = MemoryImage::expand("memory0", 100, &[(90, Bytes(vec![1; 20]))]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "memory memory0 is damaged: bytes 90..110 overlap the previous run or pass its end 100"
        );
        let runs = [(10, Bytes(vec![1; 20])), (20, Bytes(vec![1]))];
        let err = MemoryImage::expand("m", 100, &runs).unwrap_err();
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
