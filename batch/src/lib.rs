//! The packed batch: how records cross the Wasm boundary.
//!
//! Host and guest exchange records in batches, one `list<u8>` per call, in a
//! layout both sides read in place (see `wit/types.wit` and
//! `docs/batch-format.md`). All integers are little-endian:
//!
//! ```text
//! offset 0        u32 version   (= 1)
//! offset 4        u32 count     (n)
//! offset 8        n × { i64 timestamp, u32 key_end, u32 value_end }
//! offset 8 + 16n  data: key and value bytes of every record, in order
//! ```
//!
//! Record `i`'s key is `data[start(i)..key_end(i)]`, its value
//! `data[key_end(i)..value_end(i)]`, with `start(0) = 0` and
//! `start(i) = value_end(i - 1)`.
//!
//! This crate has no dependencies so that every guest SDK written in Rust and
//! the host share one implementation.
#![no_std]

extern crate alloc;

use alloc::vec::Vec;
use core::fmt;

/// The layout version written in every batch.
pub const VERSION: u32 = 1;
/// The timestamp of a record that has none.
pub const NO_TIMESTAMP: i64 = i64::MIN;
/// Size of the batch header (version and count).
pub const HEADER_LEN: usize = 8;
/// Size of one record header (timestamp, key end, value end).
pub const RECORD_HEADER_LEN: usize = 16;

/// Why bytes are not a valid batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchError {
    /// Fewer bytes than the headers need.
    Truncated {
        /// Bytes needed for the headers.
        needed: usize,
        /// Bytes present.
        len: usize,
    },
    /// A version this code does not read.
    Version(u32),
    /// A record's key or value end points outside the data or backwards.
    BadOffsets {
        /// The record's index.
        record: u32,
    },
    /// A batch would exceed the 4 GiB that 32-bit offsets can address.
    TooLarge,
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BatchError::Truncated { needed, len } => {
                write!(f, "batch truncated: headers need {needed} bytes, got {len}")
            }
            BatchError::Version(v) => {
                write!(f, "batch layout version {v} is not supported (expected {VERSION})")
            }
            BatchError::BadOffsets { record } => {
                write!(f, "batch record {record} has offsets outside its data")
            }
            BatchError::TooLarge => write!(f, "batch larger than 4 GiB"),
        }
    }
}

impl core::error::Error for BatchError {}

/// One record read from a batch, borrowing its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// Event time in ms since the epoch, or [`NO_TIMESTAMP`].
    pub timestamp: i64,
    /// The record's key; empty when it has none.
    pub key: &'a [u8],
    /// The record's value.
    pub value: &'a [u8],
}

/// A validated, borrowed view of a packed batch.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    count: u32,
    headers: &'a [u8],
    data: &'a [u8],
}

#[inline]
fn read_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[inline]
fn read_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_le_bytes(a)
}

impl<'a> Batch<'a> {
    /// Checks the layout of `bytes` once, so reads afterwards cannot fail.
    pub fn new(bytes: &'a [u8]) -> Result<Self, BatchError> {
        if bytes.len() < HEADER_LEN {
            return Err(BatchError::Truncated { needed: HEADER_LEN, len: bytes.len() });
        }
        let version = read_u32(bytes, 0);
        if version != VERSION {
            return Err(BatchError::Version(version));
        }
        let count = read_u32(bytes, 4);
        let needed = (count as usize)
            .checked_mul(RECORD_HEADER_LEN)
            .and_then(|h| h.checked_add(HEADER_LEN))
            .ok_or(BatchError::TooLarge)?;
        if bytes.len() < needed {
            return Err(BatchError::Truncated { needed, len: bytes.len() });
        }
        let headers = &bytes[HEADER_LEN..needed];
        let data = &bytes[needed..];
        let mut start = 0usize;
        for i in 0..count as usize {
            let key_end = read_u32(headers, i * RECORD_HEADER_LEN + 8) as usize;
            let value_end = read_u32(headers, i * RECORD_HEADER_LEN + 12) as usize;
            if key_end < start || value_end < key_end || value_end > data.len() {
                return Err(BatchError::BadOffsets { record: i as u32 });
            }
            start = value_end;
        }
        Ok(Batch { count, headers, data })
    }

    /// Reads record `i` of `bytes` without validating the whole batch:
    /// O(1), for random access into a batch checked once before.
    #[inline]
    pub fn record_at(bytes: &'a [u8], i: usize) -> Result<Record<'a>, BatchError> {
        if bytes.len() < HEADER_LEN {
            return Err(BatchError::Truncated { needed: HEADER_LEN, len: bytes.len() });
        }
        let count = read_u32(bytes, 4) as usize;
        let data_start = HEADER_LEN + count * RECORD_HEADER_LEN;
        if i >= count || bytes.len() < data_start {
            return Err(BatchError::BadOffsets { record: i as u32 });
        }
        let h = HEADER_LEN + i * RECORD_HEADER_LEN;
        let start = if i == 0 { 0 } else { read_u32(bytes, h - 4) as usize };
        let key_end = read_u32(bytes, h + 8) as usize;
        let value_end = read_u32(bytes, h + 12) as usize;
        let data = &bytes[data_start..];
        if start > key_end || key_end > value_end || value_end > data.len() {
            return Err(BatchError::BadOffsets { record: i as u32 });
        }
        Ok(Record {
            timestamp: read_i64(bytes, h),
            key: &data[start..key_end],
            value: &data[key_end..value_end],
        })
    }

    /// The number of records.
    #[inline]
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether the batch holds no record.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Record `i`; panics if `i >= len()`.
    #[inline]
    pub fn get(&self, i: usize) -> Record<'a> {
        let h = i * RECORD_HEADER_LEN;
        let start = if i == 0 { 0 } else { read_u32(self.headers, h - 4) as usize };
        let key_end = read_u32(self.headers, h + 8) as usize;
        let value_end = read_u32(self.headers, h + 12) as usize;
        Record {
            timestamp: read_i64(self.headers, h),
            key: &self.data[start..key_end],
            value: &self.data[key_end..value_end],
        }
    }

    /// The key of record `i`; panics if `i >= len()`.
    #[inline]
    pub fn key(&self, i: usize) -> &'a [u8] {
        self.get(i).key
    }

    /// Iterates over the records in order.
    #[inline]
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Record<'a>> + 'a {
        let this = *self;
        (0..self.len()).map(move |i| this.get(i))
    }

    /// Total bytes of keys and values.
    #[inline]
    pub fn data_len(&self) -> usize {
        self.data.len()
    }
}

/// Builds a packed batch record by record.
#[derive(Debug, Default, Clone)]
pub struct BatchBuilder {
    headers: Vec<u8>,
    data: Vec<u8>,
    count: u32,
}

impl BatchBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty builder with room for `records` records and `data` bytes.
    pub fn with_capacity(records: usize, data: usize) -> Self {
        BatchBuilder {
            headers: Vec::with_capacity(records * RECORD_HEADER_LEN),
            data: Vec::with_capacity(data),
            count: 0,
        }
    }

    /// Appends a record.
    ///
    /// Panics if the batch would exceed 4 GiB of data; callers bound batches
    /// far below that (see [`BatchBuilder::data_len`]).
    #[inline]
    pub fn push(&mut self, timestamp: i64, key: &[u8], value: &[u8]) {
        self.data.extend_from_slice(key);
        let key_end = self.data.len();
        self.data.extend_from_slice(value);
        self.finish_record(timestamp, key_end);
    }

    /// Appends a record whose value is written by `write` straight into the
    /// batch, avoiding a temporary buffer.
    #[inline]
    pub fn push_with(&mut self, timestamp: i64, key: &[u8], write: impl FnOnce(&mut Vec<u8>)) {
        self.data.extend_from_slice(key);
        let key_end = self.data.len();
        write(&mut self.data);
        self.finish_record(timestamp, key_end);
    }

    #[inline]
    fn finish_record(&mut self, timestamp: i64, key_end: usize) {
        let key_end = u32::try_from(key_end).expect("batch data exceeds 4 GiB");
        let value_end = u32::try_from(self.data.len()).expect("batch data exceeds 4 GiB");
        self.headers.extend_from_slice(&timestamp.to_le_bytes());
        self.headers.extend_from_slice(&key_end.to_le_bytes());
        self.headers.extend_from_slice(&value_end.to_le_bytes());
        self.count += 1;
    }

    /// Records pushed so far.
    #[inline]
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether no record was pushed.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes of keys and values pushed so far.
    #[inline]
    pub fn data_len(&self) -> usize {
        self.data.len()
    }

    /// Writes the packed batch and leaves the builder empty for reuse.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.headers.len() + self.data.len());
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&self.count.to_le_bytes());
        out.extend_from_slice(&self.headers);
        out.extend_from_slice(&self.data);
        self.headers.clear();
        self.data.clear();
        self.count = 0;
        out
    }
}

/// An empty packed batch.
pub fn empty() -> Vec<u8> {
    BatchBuilder::new().finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn round_trip() {
        let mut b = BatchBuilder::new();
        b.push(5, b"k1", b"hello");
        b.push(NO_TIMESTAMP, b"", b"");
        b.push_with(-7, b"key", |v| v.extend_from_slice(b"world"));
        let bytes = b.finish();
        assert!(b.is_empty());
        let batch = Batch::new(&bytes).unwrap();
        assert_eq!(batch.len(), 3);
        let got: Vec<_> = batch.iter().collect();
        assert_eq!(got[0], Record { timestamp: 5, key: b"k1", value: b"hello" });
        assert_eq!(got[1], Record { timestamp: NO_TIMESTAMP, key: b"", value: b"" });
        assert_eq!(got[2], Record { timestamp: -7, key: b"key", value: b"world" });
        assert_eq!(batch.key(2), b"key");
        assert_eq!(Batch::record_at(&bytes, 2).unwrap(), got[2]);
        assert!(Batch::record_at(&bytes, 3).is_err());
    }

    #[test]
    fn empty_batch() {
        let bytes = empty();
        assert_eq!(bytes.len(), HEADER_LEN);
        assert!(Batch::new(&bytes).unwrap().is_empty());
    }

    #[test]
    fn rejects_bad_bytes() {
        assert_eq!(Batch::new(&[1, 0]).unwrap_err(), BatchError::Truncated { needed: 8, len: 2 });
        assert_eq!(Batch::new(&[2, 0, 0, 0, 0, 0, 0, 0]).unwrap_err(), BatchError::Version(2));
        // Claims one record but has no header for it.
        let bytes = vec![1, 0, 0, 0, 1, 0, 0, 0];
        assert!(matches!(Batch::new(&bytes), Err(BatchError::Truncated { needed: 24, .. })));
        // Offsets past the data.
        let mut b = BatchBuilder::new();
        b.push(0, b"a", b"b");
        let mut bytes = b.finish();
        let n = bytes.len();
        bytes.truncate(n - 1);
        assert_eq!(Batch::new(&bytes).unwrap_err(), BatchError::BadOffsets { record: 0 });
    }
}
