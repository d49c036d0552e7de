//! The byte form of the messages between subtasks, for channels that cross
//! processes.
//!
//! Little-endian, one tag byte then the fields: a batch travels as its
//! packed bytes (written once per channel, never re-encoded record by
//! record), followed by its per-record watermarks when it has them.

use super::router::Message;

const BATCH: u8 = 0;
const WATERMARK: u8 = 1;
const IDLE: u8 = 2;
const BARRIER: u8 = 3;
const END: u8 = 4;
const LATENCY_MARKER: u8 = 5;

/// Bytes that are not a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed message between subtasks: {0}")]
pub struct WireError(&'static str);

/// Appends the byte form of `message` to `out`.
pub fn encode(message: &Message, out: &mut Vec<u8>) {
    match message {
        Message::Batch { from, bytes, watermarks } => {
            out.push(BATCH);
            out.extend_from_slice(&from.to_le_bytes());
            out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            out.extend_from_slice(bytes);
            match watermarks {
                None => out.push(0),
                Some(w) => {
                    out.push(1);
                    out.extend_from_slice(&(w.len() as u64).to_le_bytes());
                    for x in w {
                        out.extend_from_slice(&x.to_le_bytes());
                    }
                }
            }
        }
        Message::Watermark { from, watermark } => {
            out.push(WATERMARK);
            out.extend_from_slice(&from.to_le_bytes());
            out.extend_from_slice(&watermark.to_le_bytes());
        }
        Message::Idle { from } => {
            out.push(IDLE);
            out.extend_from_slice(&from.to_le_bytes());
        }
        Message::Barrier { from, id } => {
            out.push(BARRIER);
            out.extend_from_slice(&from.to_le_bytes());
            out.extend_from_slice(&id.to_le_bytes());
        }
        Message::End { from } => {
            out.push(END);
            out.extend_from_slice(&from.to_le_bytes());
        }
        Message::LatencyMarker { from, marked_us, source_task } => {
            out.push(LATENCY_MARKER);
            out.extend_from_slice(&from.to_le_bytes());
            out.extend_from_slice(&marked_us.to_le_bytes());
            out.extend_from_slice(&source_task.to_le_bytes());
        }
    }
}

/// Reads a message from the whole of `bytes`.
pub fn decode(bytes: &[u8]) -> Result<Message, WireError> {
    let mut r = Reader(bytes);
    let tag = r.take(1)?[0];
    let from = r.u32()?;
    let message = match tag {
        BATCH => {
            let len = r.len()?;
            let batch = r.take(len)?.to_vec();
            let watermarks = match r.take(1)?[0] {
                0 => None,
                1 => {
                    let n = r.len()?;
                    if n > r.0.len() / 8 {
                        return Err(WireError("watermark count past the end"));
                    }
                    Some((0..n).map(|_| r.i64()).collect::<Result<_, _>>()?)
                }
                _ => return Err(WireError("bad watermark flag")),
            };
            Message::Batch { from, bytes: batch, watermarks }
        }
        WATERMARK => Message::Watermark { from, watermark: r.i64()? },
        IDLE => Message::Idle { from },
        BARRIER => Message::Barrier { from, id: r.i64()? as u64 },
        END => Message::End { from },
        LATENCY_MARKER => {
            Message::LatencyMarker { from, marked_us: r.i64()?, source_task: r.u32()? }
        }
        _ => return Err(WireError("unknown message kind")),
    };
    if !r.0.is_empty() {
        return Err(WireError("bytes after the message"));
    }
    Ok(message)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.0.len() < n {
            return Err(WireError("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn i64(&mut self) -> Result<i64, WireError> {
        let b = self.take(8)?;
        let mut a = [0; 8];
        a.copy_from_slice(b);
        Ok(i64::from_le_bytes(a))
    }

    fn len(&mut self) -> Result<usize, WireError> {
        usize::try_from(self.i64()?).map_err(|_| WireError("length out of range"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(m: Message) {
        let mut out = Vec::new();
        encode(&m, &mut out);
        assert_eq!(decode(&out), Ok(m));
    }

    #[test]
    fn every_message_survives_the_trip() {
        round_trip(Message::Batch { from: 3, bytes: vec![1, 2, 3, 4, 5], watermarks: None });
        round_trip(Message::Batch {
            from: 0,
            bytes: vec![],
            watermarks: Some(vec![-5, 7, i64::MAX]),
        });
        round_trip(Message::Watermark { from: 9, watermark: i64::MIN });
        round_trip(Message::Idle { from: 1 });
        round_trip(Message::Barrier { from: 2, id: 77 });
        round_trip(Message::End { from: u32::MAX });
        round_trip(Message::LatencyMarker {
            from: 4,
            marked_us: 1_700_000_000_000_000,
            source_task: 2,
        });
    }

    #[test]
    fn damaged_bytes_are_refused() {
        let mut out = Vec::new();
        encode(
            &Message::Batch { from: 1, bytes: vec![9; 10], watermarks: Some(vec![1]) },
            &mut out,
        );
        for cut in 0..out.len() {
            assert!(decode(&out[..cut]).is_err(), "a message cut at {cut} was accepted");
        }
        out.push(0);
        assert_eq!(decode(&out), Err(WireError("bytes after the message")));
        assert_eq!(decode(&[9, 0, 0, 0, 0]), Err(WireError("unknown message kind")));
        // A length far past the end is refused without allocating it.
        let mut huge = vec![BATCH, 0, 0, 0, 0];
        huge.extend_from_slice(&(u64::MAX >> 1).to_le_bytes());
        assert!(decode(&huge).is_err());
    }
}
