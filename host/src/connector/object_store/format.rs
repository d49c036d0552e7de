//! Record formats of object-store files, lines in and lines out (pure).
//!
//! Records reach the plugin as the `file` source makes them: a text line
//! as it is, a JSON line as it is (checked to be JSON), a CSV row as a JSON
//! object of its fields keyed by the header (integers and floats as JSON
//! numbers, the rest as strings). Embedded newlines in quoted CSV fields
//! are not supported (one row per line).

use flinkw_batch::NO_TIMESTAMP;
use serde_json::{Map, Value};

/// The format of a file's lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// Each line is a record, as UTF-8 text.
    Text,
    /// Each line is a JSON value.
    JsonLines,
    /// Delimited rows.
    Csv(CsvOptions),
    /// Parquet files (source only): each row as a JSON object.
    Parquet,
}

/// CSV settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvOptions {
    /// The field delimiter (one ASCII character).
    pub delimiter: u8,
    /// Whether each file starts with a header row naming the fields.
    pub header: bool,
    /// Field names: for files without a header (reading), or the columns
    /// and their order (writing; default: the first record's keys).
    pub columns: Option<Vec<String>>,
}

impl Format {
    /// Parses `format` (`text`, `jsonl`, `csv`) with the CSV settings.
    pub fn parse(format: &str, csv: CsvOptions) -> Result<Format, String> {
        match format {
            "text" => Ok(Format::Text),
            "jsonl" | "json" => Ok(Format::JsonLines),
            "csv" => {
                if !csv.header && csv.columns.is_none() {
                    return Err("CSV without a header needs `csv.columns`".into());
                }
                Ok(Format::Csv(csv))
            }
            "parquet" => Ok(Format::Parquet),
            other => {
                Err(format!("unknown format `{other}` (expected text, jsonl, csv or parquet)"))
            }
        }
    }

    /// The file name suffix of part files in this format.
    pub fn suffix(&self) -> &'static str {
        match self {
            Format::Text => ".txt",
            Format::JsonLines => ".jsonl",
            Format::Csv(_) => ".csv",
            Format::Parquet => ".parquet",
        }
    }
}

/// Parses one delimiter character option.
pub fn delimiter(value: &str) -> Result<u8, String> {
    match value.as_bytes() {
        [b] if b.is_ascii() && *b != b'\n' && *b != b'"' => Ok(*b),
        _ if value == "\\t" || value == "tab" => Ok(b'\t'),
        _ => Err("expected one ASCII character (or `tab`)".into()),
    }
}

/// Turns the lines of one file into records.
#[derive(Debug, Clone)]
pub struct LineParser {
    format: Format,
    timestamp_column: Option<String>,
    header: Option<Vec<String>>,
}

impl LineParser {
    /// A parser for a new file.
    pub fn new(format: &Format, timestamp_column: Option<&str>) -> LineParser {
        let header = match format {
            Format::Csv(c) if !c.header => c.columns.clone(),
            _ => None,
        };
        LineParser {
            format: format.clone(),
            timestamp_column: timestamp_column.map(str::to_owned),
            header,
        }
    }

    /// Whether the next line is the file's header row.
    pub fn wants_header(&self) -> bool {
        matches!(self.format, Format::Csv(_)) && self.header.is_none()
    }

    /// Takes the header row.
    pub fn set_header(&mut self, line: &str) -> Result<(), String> {
        let Format::Csv(c) = &self.format else { return Ok(()) };
        let names = split_csv(line, c.delimiter).map_err(|e| format!("bad CSV header: {e}"))?;
        if names.iter().any(String::is_empty) {
            return Err("bad CSV header: an empty column name".into());
        }
        self.header = Some(names);
        Ok(())
    }

    /// The record of one data line (without its newline): its timestamp
    /// (or `NO_TIMESTAMP`) and value; `None` for a blank line.
    pub fn parse(&self, line: &str) -> Result<Option<(i64, Vec<u8>)>, String> {
        let line = line.strip_suffix('\r').unwrap_or(line);
        match &self.format {
            Format::Text => Ok(Some((NO_TIMESTAMP, line.as_bytes().to_vec()))),
            Format::Parquet => Err("Parquet files have no lines".into()),
            _ if line.trim().is_empty() => Ok(None),
            Format::JsonLines => {
                let ts = match &self.timestamp_column {
                    None => {
                        serde_json::from_str::<serde::de::IgnoredAny>(line)
                            .map_err(|e| format!("not valid JSON: {e}"))?;
                        NO_TIMESTAMP
                    }
                    Some(col) => {
                        let v: Value = serde_json::from_str(line)
                            .map_err(|e| format!("not valid JSON: {e}"))?;
                        timestamp(v.get(col), col)?
                    }
                };
                Ok(Some((ts, line.as_bytes().to_vec())))
            }
            Format::Csv(c) => {
                let header = self.header.as_deref().unwrap_or_default();
                let fields = split_csv(line, c.delimiter)?;
                if fields.len() != header.len() {
                    return Err(format!(
                        "expected {} fields (as in the header), found {}",
                        header.len(),
                        fields.len()
                    ));
                }
                let obj: Map<String, Value> =
                    header.iter().cloned().zip(fields.into_iter().map(csv_value)).collect();
                let ts = match &self.timestamp_column {
                    None => NO_TIMESTAMP,
                    Some(col) => timestamp(obj.get(col), col)?,
                };
                let value = serde_json::to_vec(&obj).map_err(|e| e.to_string())?;
                Ok(Some((ts, value)))
            }
        }
    }
}

/// An event time in ms from a field.
pub(super) fn timestamp(v: Option<&Value>, col: &str) -> Result<i64, String> {
    let bad = || format!("timestamp field `{col}` is not an integer of ms since the epoch");
    match v {
        None => Err(format!("no timestamp field `{col}`")),
        Some(Value::Number(n)) => n.as_i64().ok_or_else(bad),
        Some(Value::String(s)) => s.trim().parse().map_err(|_| bad()),
        Some(_) => Err(bad()),
    }
}

/// Splits one CSV line (RFC 4180 quoting, no embedded newlines).
fn split_csv(line: &str, delimiter: u8) -> Result<Vec<String>, String> {
    if !line.matches('"').count().is_multiple_of(2) {
        return Err("not valid CSV: unterminated quote".to_owned());
    }
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(line.as_bytes());
    let mut record = csv::StringRecord::new();
    match reader.read_record(&mut record) {
        Ok(true) => Ok(record.iter().map(str::to_owned).collect()),
        Ok(false) => Ok(Vec::new()),
        Err(e) => Err(format!("not valid CSV: {e}")),
    }
}

/// A CSV field as JSON: integers and floats as numbers, the rest as strings.
fn csv_value(field: String) -> Value {
    if let Ok(i) = field.parse::<i64>() {
        return i.into();
    }
    if let Ok(f) = field.parse::<f64>()
        && f.is_finite()
        && let Some(n) = serde_json::Number::from_f64(f)
    {
        return n.into();
    }
    field.into()
}

/// Encodes records as lines of a part file.
#[derive(Debug, Clone)]
pub struct LineEncoder {
    format: Format,
    columns: Option<Vec<String>>,
}

impl LineEncoder {
    /// An encoder for one part file.
    pub fn new(format: &Format) -> LineEncoder {
        let columns = match format {
            Format::Csv(c) => c.columns.clone(),
            _ => None,
        };
        LineEncoder { format: format.clone(), columns }
    }

    /// Appends the line of `value` (plus a header row before a CSV part's
    /// first row when `first`) to `out`.
    pub fn encode(&mut self, value: &[u8], first: bool, out: &mut Vec<u8>) -> Result<(), String> {
        let Format::Csv(c) = &self.format else {
            out.extend_from_slice(value);
            out.push(b'\n');
            return Ok(());
        };
        let Ordered(fields) = serde_json::from_slice(value).map_err(|_| {
            format!(
                "a CSV sink takes JSON objects; got {:?}",
                String::from_utf8_lossy(&value[..value.len().min(80)])
            )
        })?;
        let columns =
            self.columns.get_or_insert_with(|| fields.iter().map(|(k, _)| k.clone()).collect());
        let obj: Map<String, Value> = fields.into_iter().collect();
        let mut w = csv::WriterBuilder::new().delimiter(c.delimiter).from_writer(Vec::new());
        let io = |e: csv::Error| e.to_string();
        if first && c.header {
            w.write_record(columns.iter()).map_err(io)?;
        }
        let fields = columns.iter().map(|k| match obj.get(k) {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
        });
        w.write_record(fields).map_err(io)?;
        out.extend_from_slice(&w.into_inner().map_err(|e| e.to_string())?);
        Ok(())
    }
}

/// A JSON object's fields in their order in the text.
struct Ordered(Vec<(String, Value)>);

impl<'de> serde::Deserialize<'de> for Ordered {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<Ordered, A::Error> {
                let mut fields = Vec::new();
                while let Some(entry) = m.next_entry::<String, Value>()? {
                    fields.push(entry);
                }
                Ok(Ordered(fields))
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csv(header: bool, columns: Option<&[&str]>) -> Format {
        Format::Csv(CsvOptions {
            delimiter: b';',
            header,
            columns: columns.map(|c| c.iter().map(|s| s.to_string()).collect()),
        })
    }

    #[test]
    fn csv_rows_become_json_objects_with_timestamps() {
        let mut p = LineParser::new(&csv(true, None), Some("ts"));
        assert!(p.wants_header());
        p.set_header("id;name;ts").unwrap();
        let (ts, v) = p.parse("7;\"a;b\";1000\r").unwrap().unwrap();
        assert_eq!(ts, 1000);
        assert_eq!(String::from_utf8(v).unwrap(), r#"{"id":7,"name":"a;b","ts":1000}"#);
        assert!(p.parse("   ").unwrap().is_none());
        assert!(p.parse("1;2").unwrap_err().contains("expected 3 fields"));
        assert!(p.parse("1;x;soon").unwrap_err().contains("timestamp field `ts`"));
    }

    #[test]
    fn csv_without_header_uses_columns() {
        let p = LineParser::new(&csv(false, Some(&["a", "b"])), None);
        assert!(!p.wants_header());
        let (_, v) = p.parse("1;x").unwrap().unwrap();
        assert_eq!(v, br#"{"a":1,"b":"x"}"#);
        assert!(
            Format::parse("csv", CsvOptions { delimiter: b',', header: false, columns: None })
                .is_err()
        );
    }

    #[test]
    fn json_lines_are_checked() {
        let p = LineParser::new(&Format::JsonLines, Some("t"));
        assert_eq!(p.parse(r#"{"t":"5"}"#).unwrap().unwrap().0, 5);
        assert!(p.parse("{nope").unwrap_err().contains("not valid JSON"));
        assert!(p.parse(r#"{"u":1}"#).unwrap_err().contains("no timestamp field `t`"));
    }

    #[test]
    fn csv_lines_are_written_with_a_header_per_part() {
        let mut e = LineEncoder::new(&csv(true, None));
        let mut out = Vec::new();
        e.encode(br#"{"b":1,"a":"x;y"}"#, true, &mut out).unwrap();
        e.encode(br#"{"a":"z","b":null}"#, false, &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "b;a\n1;\"x;y\"\n;z\n");
        assert!(e.encode(b"\"str\"", false, &mut Vec::new()).unwrap_err().contains("JSON objects"));
    }

    #[test]
    fn delimiters() {
        assert_eq!(delimiter("|").unwrap(), b'|');
        assert_eq!(delimiter("tab").unwrap(), b'\t');
        assert!(delimiter("ab").is_err());
    }
}
