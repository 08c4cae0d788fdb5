//! Incremental Server-Sent Events decoder for upstream streams.
//!
//! Follows the WHATWG rules the official SDKs implement: lines end in `\n`, `\r\n` or `\r`; a
//! blank line ends an event; lines starting with `:` are comments (keep-alives); several `data:`
//! lines join with `\n`. Bytes are buffered only until an event is complete.

use bytes::{Buf, Bytes, BytesMut};

/// One decoded event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, if any (Anthropic names every event; OpenAI names none).
    pub event: Option<String>,
    pub data: Bytes,
}

/// Largest event accepted; a provider sending more without a blank line is broken.
const MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, Default)]
pub struct SseDecoder {
    buf: BytesMut,
    event: Option<String>,
    data: BytesMut,
    has_data: bool,
    /// The previous chunk ended in `\r`: a `\n` starting the next one belongs to it.
    skip_lf: bool,
}

/// The stream is not valid SSE (an event too large to be real).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SseTooLarge;

impl SseDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// The next complete event from what was pushed so far.
    pub fn next_event(&mut self) -> Result<Option<SseEvent>, SseTooLarge> {
        loop {
            if self.skip_lf && !self.buf.is_empty() {
                if self.buf.first() == Some(&b'\n') {
                    self.buf.advance(1);
                }
                self.skip_lf = false;
            }
            let Some(end) = self.buf.iter().position(|&b| b == b'\n' || b == b'\r') else {
                if self.buf.len() + self.data.len() > MAX_EVENT_BYTES {
                    return Err(SseTooLarge);
                }
                return Ok(None);
            };
            let line = self.buf.split_to(end).freeze();
            let terminator = self.buf.first().copied();
            self.buf.advance(1);
            if terminator == Some(b'\r') {
                self.skip_lf = true;
            }
            if line.is_empty() {
                if !self.has_data {
                    self.event = None;
                    continue;
                }
                self.has_data = false;
                let data = std::mem::take(&mut self.data).freeze();
                return Ok(Some(SseEvent {
                    event: self.event.take(),
                    data,
                }));
            }
            self.field(line)?;
        }
    }

    fn field(&mut self, line: Bytes) -> Result<(), SseTooLarge> {
        if line.first() == Some(&b':') {
            return Ok(());
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let mut value = line.slice(i + 1..);
                if value.first() == Some(&b' ') {
                    value.advance(1);
                }
                (line.slice(..i), value)
            }
            None => (line.clone(), Bytes::new()),
        };
        match &name[..] {
            b"data" => {
                if self.has_data {
                    self.data.extend_from_slice(b"\n");
                }
                if self.data.len() + value.len() > MAX_EVENT_BYTES {
                    return Err(SseTooLarge);
                }
                self.data.extend_from_slice(&value);
                self.has_data = true;
            }
            b"event" => self.event = Some(String::from_utf8_lossy(&value).into_owned()),
            // `id` and `retry` matter to browsers reconnecting, not to a gateway.
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut d = SseDecoder::new();
        let mut out = Vec::new();
        for c in chunks {
            d.push(c);
            while let Some(e) = d.next_event().unwrap() {
                out.push(e);
            }
        }
        out
    }

    #[test]
    fn splits_on_every_terminator_style() {
        for sep in ["\n\n", "\r\n\r\n", "\r\r"] {
            let text = format!("data: a{sep}data: b{sep}");
            let evs = decode_all(&[text.as_bytes()]);
            assert_eq!(evs.len(), 2, "{sep:?}");
            assert_eq!(&evs[1].data[..], b"b");
        }
    }

    #[test]
    fn reassembles_events_cut_anywhere() {
        let text =
            b"event: message_start\r\ndata: {\"x\":1}\r\n\r\n: keep-alive\n\ndata: [DONE]\n\n";
        for cut in 0..text.len() {
            let evs = decode_all(&[&text[..cut], &text[cut..]]);
            assert_eq!(evs.len(), 2, "cut at {cut}");
            assert_eq!(evs[0].event.as_deref(), Some("message_start"));
            assert_eq!(&evs[0].data[..], b"{\"x\":1}");
            assert_eq!(evs[1].event, None);
            assert_eq!(&evs[1].data[..], b"[DONE]");
        }
    }

    #[test]
    fn joins_multiline_data_and_ignores_comments() {
        let evs = decode_all(&[b": ping\n\ndata: a\ndata:b\nid: 3\n\n"]);
        assert_eq!(evs.len(), 1);
        assert_eq!(&evs[0].data[..], b"a\nb");
    }
}
