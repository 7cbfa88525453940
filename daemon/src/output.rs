//! The first and last few KiB of a command's output: what an update step
//! and a starting successor leave in the records a person reads later.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt};

/// Bytes kept from the start and from the end of each output stream.
pub const HEAD_TAIL_BYTES: usize = 4096;

/// `argv` as one line a POSIX shell would split back into the same words:
/// plain words stay bare, anything else is single-quoted. For display only.
pub fn shell_quote(argv: &[String]) -> String {
    let mut out = String::new();
    for (i, arg) in argv.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let plain = !arg.is_empty()
            && arg
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.,/:@%+=".contains(c));
        if plain {
            out.push_str(arg);
        } else {
            out.push('\'');
            out.push_str(&arg.replace('\'', r"'\''"));
            out.push('\'');
        }
    }
    out
}

pub async fn pump(pipe: Option<impl AsyncRead + Unpin>, capture: &mut HeadTail) {
    let Some(mut pipe) = pipe else { return };
    let mut chunk = [0u8; 8192];
    loop {
        match pipe.read(&mut chunk).await {
            Ok(0) => return,
            Ok(n) => capture.push(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::debug!("step output read failed: {e}");
                return;
            }
        }
    }
}

/// The first and last [`HEAD_TAIL_BYTES`] of a stream, and optionally all
/// of it up to a limit.
pub struct HeadTail {
    head: Vec<u8>,
    tail: Vec<u8>,
    total: usize,
    full: Option<Vec<u8>>,
    max_full: usize,
}

impl Default for HeadTail {
    fn default() -> Self {
        Self::new(None)
    }
}

impl HeadTail {
    pub fn new(max_full: Option<usize>) -> Self {
        Self {
            head: Vec::new(),
            tail: Vec::new(),
            total: 0,
            full: max_full.map(|_| Vec::new()),
            max_full: max_full.unwrap_or(0),
        }
    }

    pub fn push(&mut self, chunk: &[u8]) {
        self.total = self.total.saturating_add(chunk.len());
        let room = HEAD_TAIL_BYTES - self.head.len();
        self.head.extend_from_slice(&chunk[..room.min(chunk.len())]);
        if chunk.len() >= HEAD_TAIL_BYTES {
            self.tail.clear();
            self.tail
                .extend_from_slice(&chunk[chunk.len() - HEAD_TAIL_BYTES..]);
        } else {
            self.tail.extend_from_slice(chunk);
            let excess = self.tail.len().saturating_sub(HEAD_TAIL_BYTES);
            self.tail.drain(..excess);
        }
        if let Some(full) = &mut self.full {
            if full.len() + chunk.len() <= self.max_full {
                full.extend_from_slice(chunk);
            } else {
                self.full = None;
            }
        }
    }

    pub fn head_text(&self) -> String {
        let mut bytes = &self.head[..];
        if self.total > bytes.len() {
            bytes = trim_cut_char_end(bytes);
        }
        String::from_utf8_lossy(bytes).into_owned()
    }

    pub fn tail_text(&self) -> String {
        let mut bytes = &self.tail[..];
        if self.total > bytes.len() {
            bytes = trim_cut_char_start(bytes);
        }
        String::from_utf8_lossy(bytes).into_owned()
    }

    pub fn full_text(&self) -> Option<String> {
        self.full
            .as_ref()
            .map(|b| String::from_utf8_lossy(b).into_owned())
    }
}

/// Drops an incomplete UTF-8 sequence at the end (cut by the head limit).
fn trim_cut_char_end(bytes: &[u8]) -> &[u8] {
    // The last lead byte within the final 4 bytes, and the length it
    // announces.
    for back in 1..=bytes.len().min(4) {
        let i = bytes.len() - back;
        let b = bytes[i];
        if b & 0xC0 == 0x80 {
            continue; // continuation byte
        }
        let want = match b {
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => 1,
        };
        return if back < want { &bytes[..i] } else { bytes };
    }
    bytes
}

/// Drops continuation bytes at the start (a character cut by the tail).
fn trim_cut_char_start(bytes: &[u8]) -> &[u8] {
    let skip = bytes
        .iter()
        .take(3)
        .take_while(|&&b| b & 0xC0 == 0x80)
        .count();
    &bytes[skip..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_trimming_only_drops_cut_characters() {
        assert_eq!(trim_cut_char_end(b"ab\xc3"), b"ab");
        assert_eq!(trim_cut_char_end(b"ab\xc3\xa9"), b"ab\xc3\xa9");
        assert_eq!(trim_cut_char_end(b"a\xe2\x82"), b"a");
        assert_eq!(trim_cut_char_end(b"a\xf0\x9f\x98"), b"a");
        assert_eq!(
            trim_cut_char_end(b"a\xf0\x9f\x98\x80"),
            b"a\xf0\x9f\x98\x80"
        );
        assert_eq!(trim_cut_char_end(b"abc"), b"abc");
        assert_eq!(trim_cut_char_start(b"\xa9bc"), b"bc");
        assert_eq!(trim_cut_char_start(b"\x9f\x98\x80z"), b"z");
        assert_eq!(trim_cut_char_start(b"abc"), b"abc");
    }
}
