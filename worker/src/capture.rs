//! Bounded readers for a child's output: stdout kept up to a limit (and counted beyond it, so
//! an oversized output can be reported exactly), stderr reduced to its tail.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt};

const CHUNK: usize = 64 * 1024;

/// Stdout: the first `limit` bytes, and how many bytes there were in all.
#[derive(Debug)]
pub(crate) struct Capped {
    kept: Vec<u8>,
    total: usize,
    limit: usize,
}

impl Capped {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            kept: Vec::new(),
            total: 0,
            limit,
        }
    }

    pub(crate) fn push(&mut self, bytes: &[u8]) {
        self.total = self.total.saturating_add(bytes.len());
        let room = self.limit.saturating_sub(self.kept.len());
        self.kept.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    pub(crate) fn total(&self) -> usize {
        self.total
    }

    pub(crate) fn overflowed(&self) -> bool {
        self.total > self.limit
    }

    pub(crate) fn kept(&self) -> &[u8] {
        &self.kept
    }

    /// Reads `from` to its end. Keeps reading past the limit (discarding) so the child never
    /// blocks on a full pipe and the total is exact.
    pub(crate) async fn read_from(&mut self, mut from: impl AsyncRead + Unpin) -> io::Result<()> {
        let mut buf = vec![0; CHUNK];
        loop {
            let n = from.read(&mut buf).await?;
            if n == 0 {
                return Ok(());
            }
            self.push(&buf[..n]);
        }
    }
}

/// Stderr: the last `capacity` bytes.
#[derive(Debug)]
pub(crate) struct Tail {
    bytes: Vec<u8>,
    capacity: usize,
    cut: bool,
}

impl Tail {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            bytes: Vec::new(),
            capacity,
            cut: false,
        }
    }

    pub(crate) fn push(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
        // Trim in amortised steps: only once twice the capacity has built up.
        if self.bytes.len() > self.capacity.saturating_mul(2) {
            let excess = self.bytes.len() - self.capacity;
            self.bytes.drain(..excess);
            self.cut = true;
        }
    }

    /// Reads `from` to its end; a read error ends the tail early (it is diagnostics only).
    pub(crate) async fn read_from(&mut self, mut from: impl AsyncRead + Unpin) {
        let mut buf = vec![0; CHUNK];
        loop {
            match from.read(&mut buf).await {
                Ok(0) => return,
                Ok(n) => self.push(&buf[..n]),
                Err(error) => {
                    tracing::debug!(%error, "stopped reading stderr");
                    return;
                }
            }
        }
    }

    /// The last `capacity` bytes as text, starting on a character boundary, trimmed.
    pub(crate) fn text(&self) -> String {
        let start = self.bytes.len().saturating_sub(self.capacity);
        let mut tail = &self.bytes[start..];
        if self.cut || start > 0 {
            // Skip UTF-8 continuation bytes left over from a character we cut in half.
            let skip = tail
                .iter()
                .take(3)
                .take_while(|b| (**b & 0xC0) == 0x80)
                .count();
            tail = &tail[skip..];
        }
        String::from_utf8_lossy(tail).trim().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capped_keeps_the_head_and_counts_everything() {
        let mut out = Capped::new(4);
        out.push(b"abc");
        out.push(b"defgh");
        assert_eq!(out.kept(), b"abcd");
        assert_eq!(out.total(), 8);
        assert!(out.overflowed());
        let mut exact = Capped::new(3);
        exact.push(b"abc");
        assert!(!exact.overflowed());
    }

    #[test]
    fn tail_keeps_the_end_on_a_char_boundary() {
        let mut tail = Tail::new(5);
        // The 5-byte window starts on the second byte of "é".
        for _ in 0..10 {
            tail.push("xxé".as_bytes());
        }
        tail.push(b"1234");
        let text = tail.text();
        assert!(text.ends_with("1234"), "{text:?}");
        assert!(!text.contains('\u{FFFD}'), "{text:?}");
        assert!(text.len() <= 5);
    }

    #[test]
    fn tail_of_short_output_is_whole_and_trimmed() {
        let mut tail = Tail::new(4096);
        tail.push(b"  oops\n");
        assert_eq!(tail.text(), "oops");
    }
}
