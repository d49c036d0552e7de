//! A record's value and headers in one batch value (source option
//! `headers=in-value`): the batch format carries key, value and timestamp
//! only, so headers travel inside the value as the postcard encoding of
//! `(value: bytes, headers: [(name: string, value: bytes)])`, headers in
//! the record's order (a name may repeat; a null header value is empty).
//! The SDK's `KafkaSource::records` asks for it and decodes it.

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
}
