//! A record's value and headers in one batch value (source option
//! `headers=in-value`): the batch format carries key, value and timestamp
//! only, so headers travel inside the value as the postcard encoding of
//! `(value: bytes, headers: [(name: string, value: bytes)])`, headers in
//! the record's order (a name may repeat; a null header value is empty).
//! The SDK's `KafkaSource::records` asks for it and decodes it.
//!
//! The sink reads the same layout back (sink option `headers=in-value`,
//! the SDK's `Stream::sink_records`): [`decode`] splits a batch value into
//! the record's value and its headers.

/// Appends a postcard varint (LEB128) of `n` to `out`.
fn varint(out: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Appends bytes with their length, as postcard writes `Vec<u8>` / `String`.
fn bytes(out: &mut Vec<u8>, b: &[u8]) {
    varint(out, b.len());
    out.extend_from_slice(b);
}

/// Writes the envelope of `value` and `headers` into `out` (cleared first).
pub fn encode<'a>(
    out: &mut Vec<u8>,
    value: &[u8],
    headers: impl ExactSizeIterator<Item = (&'a str, &'a [u8])>,
) {
    out.clear();
    bytes(out, value);
    varint(out, headers.len());
    for (name, v) in headers {
        bytes(out, name.as_bytes());
        bytes(out, v);
    }
}

/// Reads a postcard varint (LEB128, at most 64 bits) at `*at`.
fn read_varint(b: &[u8], at: &mut usize) -> Result<usize, String> {
    let mut n: u64 = 0;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*at).ok_or("ends inside a length")?;
        *at += 1;
        n |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return usize::try_from(n).map_err(|_| "a length is too large".to_owned());
        }
    }
    Err("a length is too long".into())
}

/// Reads bytes with their length at `*at`.
fn read_bytes<'a>(b: &'a [u8], at: &mut usize) -> Result<&'a [u8], String> {
    let n = read_varint(b, at)?;
    let end = at.checked_add(n).filter(|e| *e <= b.len()).ok_or_else(|| {
        format!("a length of {n} bytes at byte {at} runs past the end ({} bytes)", b.len())
    })?;
    let out = &b[*at..end];
    *at = end;
    Ok(out)
}

/// A record's value and headers as [`encode`] wrote them (borrowed).
pub type Decoded<'a> = (&'a [u8], Vec<(&'a str, &'a [u8])>);

/// Splits an envelope into the value and the headers; the error says what
/// is wrong (for the sink to name the record).
pub fn decode(b: &[u8]) -> Result<Decoded<'_>, String> {
    let mut at = 0;
    let value = read_bytes(b, &mut at)?;
    let n = read_varint(b, &mut at)?;
    let mut headers = Vec::with_capacity(n.min(1024));
    for i in 0..n {
        let name = read_bytes(b, &mut at)?;
        let name = std::str::from_utf8(name)
            .map_err(|e| format!("the name of header {i} is not UTF-8: {e}"))?;
        headers.push((name, read_bytes(b, &mut at)?));
    }
    if at != b.len() {
        return Err(format!("{} bytes after the headers", b.len() - at));
    }
    Ok((value, headers))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_postcard_of_value_and_headers() {
        let big = vec![7u8; 300];
        let headers: Vec<(String, Vec<u8>)> = vec![
            ("trace".into(), b"abc".to_vec()),
            ("bin".into(), vec![0, 255, 1]),
            ("trace".into(), Vec::new()),
            ("long".into(), big.clone()),
        ];
        let mut out = vec![1, 2, 3];
        encode(&mut out, &big, headers.iter().map(|(k, v)| (k.as_str(), v.as_slice())));
        let want = postcard::to_allocvec(&(big.clone(), headers.clone())).unwrap();
        assert_eq!(out, want);
        let (v, h): (Vec<u8>, Vec<(String, Vec<u8>)>) = postcard::from_bytes(&out).unwrap();
        assert_eq!((v, h), (big, headers));
        encode(&mut out, b"", std::iter::empty());
        assert_eq!(
            out,
            postcard::to_allocvec(&(Vec::<u8>::new(), Vec::<(String, Vec<u8>)>::new())).unwrap()
        );
    }

    #[test]
    fn decode_reads_what_encode_and_postcard_write() {
        let headers: Vec<(String, Vec<u8>)> = vec![
            ("trace".into(), b"abc".to_vec()),
            ("bin".into(), vec![0, 255, 1]),
            ("trace".into(), Vec::new()),
            ("long".into(), vec![9u8; 300]),
        ];
        let bytes = postcard::to_allocvec(&(b"v".to_vec(), headers.clone())).unwrap();
        let (value, got) = decode(&bytes).unwrap();
        assert_eq!(value, b"v");
        let got: Vec<(String, Vec<u8>)> =
            got.into_iter().map(|(k, v)| (k.to_owned(), v.to_vec())).collect();
        assert_eq!(got, headers);
        let mut out = Vec::new();
        encode(&mut out, b"", std::iter::empty());
        assert_eq!(decode(&out).unwrap(), (&b""[..], vec![]));
    }

    #[test]
    fn decode_names_what_is_wrong() {
        assert!(decode(b"").unwrap_err().contains("ends inside a length"));
        let e = decode(&[5, b'a']).unwrap_err();
        assert!(e.contains("a length of 5 bytes at byte 1 runs past the end (2 bytes)"), "{e}");
        let mut out = Vec::new();
        encode(&mut out, b"v", [("h", &b"x"[..])].into_iter());
        out.push(0);
        assert!(decode(&out).unwrap_err().contains("1 bytes after the headers"));
        // Plain text is not an envelope.
        assert!(decode(b"hello world").is_err());
        let bad_name =
            postcard::to_allocvec(&(Vec::<u8>::new(), vec![(vec![0xffu8], vec![1u8])])).unwrap();
        assert!(decode(&bad_name).unwrap_err().contains("header 0 is not UTF-8"));
    }
}
