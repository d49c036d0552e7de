//! How values are encoded where they cross to the host.

use serde::{Serialize, de::DeserializeOwned};

/// A value that can travel between operators: anything serde can encode.
///
/// Between fused steps values stay plain Rust values; they are encoded
/// (with `postcard`) only where they leave the guest.
pub trait Data: Serialize + DeserializeOwned + 'static {}

impl<T: Serialize + DeserializeOwned + 'static> Data for T {}

/// Turns the bytes of a record into a value of the stream's type.
pub(crate) type Decoder<T> = fn(&[u8]) -> Result<T, String>;

pub(crate) fn decode_postcard<T: Data>(bytes: &[u8]) -> Result<T, String> {
    postcard::from_bytes(bytes).map_err(|e| format!("cannot decode record value: {e}"))
}

pub(crate) fn encode_postcard<T: Data>(value: &T, out: &mut Vec<u8>) -> Result<(), String> {
    postcard::to_extend(value, std::mem::take(out))
        .map(|v| *out = v)
        .map_err(|e| format!("cannot encode record value: {e}"))
}

pub(crate) fn decode_utf8<T: Data>(bytes: &[u8]) -> Result<T, String> {
    let s = std::str::from_utf8(bytes).map_err(|e| format!("record is not UTF-8: {e}"))?;
    // A `String` stream gets the text as is; any other type reads it as JSON.
    let as_json_string = serde_json::Value::String(s.to_owned());
    serde_json::from_value(as_json_string)
        .or_else(|_| serde_json::from_str(s).map_err(|e| format!("cannot parse record {s:?}: {e}")))
}

pub(crate) fn decode_json<T: Data>(bytes: &[u8]) -> Result<T, String> {
    serde_json::from_slice(bytes)
        .map_err(|e| format!("cannot decode record {:?}: {e}", String::from_utf8_lossy(bytes)))
}

/// Text for line-oriented sinks: strings as they are, other values as JSON.
pub(crate) fn encode_text<T: Data>(value: &T, out: &mut Vec<u8>) -> Result<(), String> {
    let start = out.len();
    serde_json::to_writer(&mut *out, value).map_err(|e| format!("cannot encode record: {e}"))?;
    if out.get(start) == Some(&b'"') {
        let s: String = serde_json::from_slice(&out[start..]).map_err(|e| e.to_string())?;
        out.truncate(start);
        out.extend_from_slice(s.as_bytes());
    }
    Ok(())
}
