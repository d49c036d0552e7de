//! Parquet files of the object-store source: rows read with the `parquet`
//! crate's record API (no Arrow), one row group in memory at a time, each
//! row handed on as a JSON object (like a CSV row), so plugins that read
//! JSON lines read Parquet unchanged.
//!
//! A position in a Parquet file is the number of rows read from its start;
//! a restore finds the row group that row is in from the footer and skips
//! the rows before it in that group.

use std::io::Read;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::errors::ParquetError;
use parquet::file::metadata::ParquetMetaData;
use parquet::file::reader::{ChunkReader, FileReader, Length};
use parquet::file::serialized_reader::{ReadOptionsBuilder, SerializedFileReader};
use parquet::record::reader::RowIter;
use parquet::record::{Field, Row};
use serde_json::Value;

use crate::objstore::block_on;

/// How much of a file's end is fetched at once for its footer.
const FOOTER_FETCH: u64 = 64 * 1024;
/// Reads beyond the fetched ranges go in pieces of this size.
const READ_PIECE: u64 = 256 * 1024;

/// A Parquet object read with ranged GETs; the footer and the row group
/// being read are fetched once and served from memory.
#[derive(Clone)]
struct StoreChunks {
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
    /// Fetched ranges: (start, bytes). The footer stays; a row group
    /// replaces the one before.
    fetched: Arc<Mutex<Vec<(u64, Bytes)>>>,
}

impl StoreChunks {
    fn get(&self, start: u64, len: u64) -> parquet::errors::Result<Bytes> {
        let end = start.saturating_add(len);
        if end > self.size {
            return Err(ParquetError::EOF(format!(
                "range {start}..{end} is beyond the end of the file ({} bytes)",
                self.size
            )));
        }
        {
            let fetched = self.fetched.lock().unwrap_or_else(|p| p.into_inner());
            for (at, bytes) in fetched.iter() {
                if start >= *at && end <= at + bytes.len() as u64 {
                    let from = (start - at) as usize;
                    return Ok(bytes.slice(from..from + len as usize));
                }
            }
        }
        if len == 0 {
            return Ok(Bytes::new());
        }
        block_on(self.store.get_range(&self.path, start..end))
            .map_err(|e| ParquetError::External(Box::new(e)))
    }

    /// Fetches `start..end` and keeps it (after the footer, replacing an
    /// earlier row group).
    fn fetch(&self, start: u64, end: u64, keep_first: bool) -> parquet::errors::Result<()> {
        let end = end.min(self.size);
        let bytes = self.get(start, end.saturating_sub(start))?;
        let mut fetched = self.fetched.lock().unwrap_or_else(|p| p.into_inner());
        let keep = usize::from(keep_first).min(fetched.len());
        fetched.truncate(keep);
        fetched.push((start, bytes));
        Ok(())
    }
}

impl Length for StoreChunks {
    fn len(&self) -> u64 {
        self.size
    }
}

/// A [`Read`] from an offset of a [`StoreChunks`].
struct ChunkRead {
    chunks: StoreChunks,
    pos: u64,
    buf: Bytes,
}

impl Read for ChunkRead {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.buf.is_empty() {
            let len = READ_PIECE.min(self.chunks.size.saturating_sub(self.pos));
            if len == 0 {
                return Ok(0);
            }
            self.buf = self.chunks.get(self.pos, len).map_err(std::io::Error::other)?;
            self.pos += len;
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf[..n]);
        let _ = self.buf.split_to(n);
        Ok(n)
    }
}

impl ChunkReader for StoreChunks {
    type T = ChunkRead;

    fn get_read(&self, start: u64) -> parquet::errors::Result<ChunkRead> {
        Ok(ChunkRead { chunks: self.clone(), pos: start, buf: Bytes::new() })
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        self.get(start, length as u64)
    }
}

/// One Parquet file being read, row by row.
pub struct ParquetCursor {
    /// The file, for messages (`s3://bucket/key`).
    pub name: String,
    chunks: StoreChunks,
    metadata: Arc<ParquetMetaData>,
    /// The row group being read, and the rows of it left.
    group: usize,
    rows: Option<RowIter<'static>>,
    /// Rows read from the start of the file (the position).
    pub row: u64,
}

/// Runs a call into the `parquet` crate, turning a panic on damaged data
/// into an error.
fn guarded<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(panic) => Err(panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "the Parquet reader failed".into())),
    }
}

impl ParquetCursor {
    /// Opens `path` (of `size` bytes) and goes to row `row` (counted from
    /// the start of the file). Errors name the file.
    pub fn open(
        store: Arc<dyn ObjectStore>,
        path: Path,
        name: String,
        size: u64,
        row: u64,
    ) -> Result<ParquetCursor, String> {
        let chunks = StoreChunks { store, path, size, fetched: Arc::default() };
        let bad = |e: String| format!("{name}: not a readable Parquet file: {e}");
        let footer = size.min(FOOTER_FETCH);
        chunks.fetch(size - footer, size, false).map_err(|e| bad(e.to_string()))?;
        let reader =
            guarded(|| SerializedFileReader::new(chunks.clone()).map_err(|e| e.to_string()))
                .map_err(bad)?;
        let metadata = Arc::new(reader.metadata().clone());
        let mut cursor = ParquetCursor { name, chunks, metadata, group: 0, rows: None, row: 0 };
        // Whole row groups before `row` are skipped by their counts.
        let groups = cursor.metadata.row_groups();
        while cursor.group < groups.len() {
            let n = groups[cursor.group].num_rows().max(0) as u64;
            if cursor.row + n > row {
                break;
            }
            cursor.row += n;
            cursor.group += 1;
        }
        while cursor.row < row {
            if cursor.next_row()?.is_none() {
                break;
            }
        }
        Ok(cursor)
    }

    /// Where row `row` (of the file) is, for messages: its row group and
    /// its row in that group.
    fn place_of(&self, row: u64) -> String {
        let mut before = 0;
        for (g, group) in self.metadata.row_groups().iter().enumerate() {
            let n = group.num_rows().max(0) as u64;
            if row < before + n {
                return format!("row group {g}, row {}", row - before);
            }
            before += n;
        }
        format!("row group {}, row {}", self.metadata.num_row_groups(), row - before)
    }

    /// Where the next row is, for messages.
    pub fn place(&self) -> String {
        self.place_of(self.row)
    }

    /// Where the row just read is, for messages.
    pub fn place_of_last(&self) -> String {
        self.place_of(self.row.saturating_sub(1))
    }

    /// Starts reading row group `self.group`.
    fn open_group(&mut self) -> Result<(), String> {
        let group = self.group;
        let meta = self.metadata.row_group(group);
        let (mut start, mut end) = (u64::MAX, 0u64);
        for c in meta.columns() {
            let (s, len) = c.byte_range();
            start = start.min(s);
            end = end.max(s.saturating_add(len));
        }
        if start < end {
            self.chunks.fetch(start, end, true).map_err(|e| e.to_string())?;
        }
        let chunks = self.chunks.clone();
        let rows = guarded(move || {
            let options =
                ReadOptionsBuilder::new().with_predicate(Box::new(move |_, i| i == group)).build();
            let reader = SerializedFileReader::new_with_options(chunks, options)
                .map_err(|e| e.to_string())?;
            // Checked here: the row iterator panics when this fails.
            reader.get_row_group(0).map_err(|e| e.to_string())?;
            Ok(RowIter::from_file_into(Box::new(reader)))
        })?;
        self.rows = Some(rows);
        Ok(())
    }

    /// The next row, or `None` at the end of the file. Errors name the
    /// file, row group and row.
    pub fn next_row(&mut self) -> Result<Option<Row>, String> {
        loop {
            if self.group >= self.metadata.num_row_groups() {
                return Ok(None);
            }
            if self.rows.is_none() {
                self.open_group().map_err(|e| format!("{}, {}: {e}", self.name, self.place()))?;
            }
            let Some(rows) = self.rows.as_mut() else { continue };
            let next = guarded(|| rows.next().transpose().map_err(|e| e.to_string()));
            match next {
                Ok(Some(row)) => {
                    self.row += 1;
                    return Ok(Some(row));
                }
                Ok(None) => {
                    self.rows = None;
                    self.group += 1;
                }
                Err(e) => {
                    self.rows = None;
                    return Err(format!("{}, {}: cannot decode: {e}", self.name, self.place()));
                }
            }
        }
    }
}

/// A row as a JSON object, its columns in the file's order: numbers as
/// numbers, strings and UTF-8 binary as strings (other binary as hex),
/// timestamps as integers of ms since the epoch, times of day as integers
/// (ms or µs), dates and decimals as strings, groups as objects, lists as
/// arrays, maps as objects.
pub fn row_to_json(row: &Row) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    write_row(row, &mut out);
    out
}

/// The JSON value of column `name` of `row`.
pub fn column(row: &Row, name: &str) -> Option<Value> {
    row.get_column_iter().find(|(n, _)| n.as_str() == name).map(|(_, f)| field_to_json(f))
}

fn write_json(v: &impl serde::Serialize, out: &mut Vec<u8>) {
    // Writing to a Vec fails only on a non-string map key: none here.
    let _ = serde_json::to_writer(&mut *out, v);
}

fn write_row(row: &Row, out: &mut Vec<u8>) {
    out.push(b'{');
    for (i, (name, f)) in row.get_column_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_json(name, out);
        out.push(b':');
        write_field(f, out);
    }
    out.push(b'}');
}

fn write_field(f: &Field, out: &mut Vec<u8>) {
    match f {
        Field::Group(row) => write_row(row, out),
        Field::ListInternal(list) => {
            out.push(b'[');
            for (i, e) in list.elements().iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_field(e, out);
            }
            out.push(b']');
        }
        Field::MapInternal(map) => {
            out.push(b'{');
            for (i, (k, v)) in map.entries().iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                match field_to_json(k) {
                    Value::String(s) => write_json(&s, out),
                    other => write_json(&other.to_string(), out),
                }
                out.push(b':');
                write_field(v, out);
            }
            out.push(b'}');
        }
        scalar => write_json(&field_to_json(scalar), out),
    }
}

fn field_to_json(f: &Field) -> Value {
    let float = |x: f64| serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number);
    match f {
        Field::Null => Value::Null,
        Field::Bool(b) => Value::Bool(*b),
        Field::Byte(n) => (*n).into(),
        Field::Short(n) => (*n).into(),
        Field::Int(n) => (*n).into(),
        Field::Long(n) => (*n).into(),
        Field::UByte(n) => (*n).into(),
        Field::UShort(n) => (*n).into(),
        Field::UInt(n) => (*n).into(),
        Field::ULong(n) => (*n).into(),
        Field::Float16(n) => float(f64::from(*n)),
        Field::Float(n) => float(f64::from(*n)),
        Field::Double(n) => float(*n),
        Field::Str(s) => Value::String(s.clone()),
        Field::Bytes(b) => match std::str::from_utf8(b.data()) {
            Ok(s) => Value::String(s.to_owned()),
            Err(_) => Value::String(hex::encode(b.data())),
        },
        Field::TimeMillis(t) => (*t).into(),
        Field::TimeMicros(t) => (*t).into(),
        Field::TimestampMillis(t) => (*t).into(),
        Field::TimestampMicros(t) => t.div_euclid(1000).into(),
        Field::Date(_) | Field::Decimal(_) => Value::String(f.to_string()),
        Field::Group(_) | Field::ListInternal(_) | Field::MapInternal(_) => {
            let mut out = Vec::new();
            write_field(f, &mut out);
            serde_json::from_slice(&out).unwrap_or(Value::Null)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;
    use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, Int64Type};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::parser::parse_message_type;

    /// A file of `groups` row groups of `per` rows: id, name, amount.
    fn file(groups: u64, per: u64) -> Vec<u8> {
        let schema = Arc::new(
            parse_message_type(
                "message m { required int64 id; required binary name (UTF8); optional double amount; }",
            )
            .unwrap(),
        );
        let props = Arc::new(
            WriterProperties::builder()
                .set_compression(parquet::basic::Compression::SNAPPY)
                .build(),
        );
        let mut out = Vec::new();
        let mut w = SerializedFileWriter::new(&mut out, schema, props).unwrap();
        for g in 0..groups {
            let ids: Vec<i64> = (g * per..(g + 1) * per).map(|i| i as i64).collect();
            let mut rg = w.next_row_group().unwrap();
            let mut c = rg.next_column().unwrap().unwrap();
            c.typed::<Int64Type>().write_batch(&ids, None, None).unwrap();
            c.close().unwrap();
            let names: Vec<ByteArray> =
                ids.iter().map(|i| format!("n{i}").as_str().into()).collect();
            let mut c = rg.next_column().unwrap().unwrap();
            c.typed::<ByteArrayType>().write_batch(&names, None, None).unwrap();
            c.close().unwrap();
            // Every third amount is null.
            let def: Vec<i16> = ids.iter().map(|i| i16::from(i % 3 != 0)).collect();
            let amounts: Vec<f64> =
                ids.iter().filter(|i| *i % 3 != 0).map(|i| *i as f64 / 4.0).collect();
            let mut c = rg.next_column().unwrap().unwrap();
            c.typed::<DoubleType>().write_batch(&amounts, Some(&def), None).unwrap();
            c.close().unwrap();
            rg.close().unwrap();
        }
        w.close().unwrap();
        out
    }

    fn put(bytes: Vec<u8>) -> (Arc<dyn ObjectStore>, Path, u64) {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let path = Path::from("t/f.parquet");
        let size = bytes.len() as u64;
        block_on(store.put(&path, bytes.into())).unwrap();
        (store, path, size)
    }

    fn read_all(c: &mut ParquetCursor) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(r) = c.next_row().unwrap() {
            out.push(String::from_utf8(row_to_json(&r)).unwrap());
        }
        out
    }

    #[test]
    fn reads_every_row_as_json_and_resumes_at_any_row() {
        let (store, path, size) = put(file(3, 10));
        let mut c = ParquetCursor::open(store.clone(), path.clone(), "f".into(), size, 0).unwrap();
        let all = read_all(&mut c);
        assert_eq!(all.len(), 30);
        assert_eq!(all[0], r#"{"id":0,"name":"n0","amount":null}"#);
        assert_eq!(all[1], r#"{"id":1,"name":"n1","amount":0.25}"#);
        for start in [1, 9, 10, 11, 29, 30] {
            let mut c =
                ParquetCursor::open(store.clone(), path.clone(), "f".into(), size, start).unwrap();
            assert_eq!(c.row, start);
            assert_eq!(read_all(&mut c), all[start as usize..], "from row {start}");
        }
    }

    #[test]
    fn damage_names_the_file_and_row_group() {
        let bytes = file(2, 10);
        let (store, path, size) = put(b"not parquet at all".to_vec());
        let e = ParquetCursor::open(store, path, "s3://b/x.parquet".into(), size, 0).err().unwrap();
        assert!(e.contains("s3://b/x.parquet: not a readable Parquet file"), "{e}");
        // Garbage in the middle of the data pages of row group 1.
        let mut broken = bytes.clone();
        let (store0, p0, s0) = put(bytes);
        let c = ParquetCursor::open(store0, p0, "f".into(), s0, 0).unwrap();
        let (start, len) = c.metadata.row_group(1).column(1).byte_range();
        for b in &mut broken[start as usize..(start + len) as usize] {
            *b = 0xff;
        }
        let (store, path, size) = put(broken);
        let mut c = ParquetCursor::open(store, path, "f.parquet".into(), size, 0).unwrap();
        let mut n = 0;
        let e = loop {
            match c.next_row() {
                Ok(Some(_)) => n += 1,
                Ok(None) => panic!("read {n} rows of a damaged file"),
                Err(e) => break e,
            }
        };
        assert_eq!(n, 10, "row group 0 is intact");
        assert!(e.starts_with("f.parquet, row group 1, row 0:"), "{e}");
    }
}
