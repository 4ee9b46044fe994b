//! The new file as pieces: bytes the writer wrote, and byte ranges of the source file that the
//! new file holds unchanged and that were never fetched.
//!
//! A row group copied without being fetched ([`Surgeon::copy_unfetched`](super::Surgeon)) is
//! appended to the Parquet writer like any copied row group, so the writer shifts its offsets
//! and writes its footer entries, but its column chunks' bytes are read from [`Unfetched`]
//! (zeros) and [`Spliced`] drops them again, leaving a [`Piece::Source`] range in their place.
//! The upload then copies that range from the source (on S3 server-side, with
//! `UploadPartCopy`). Adjacent ranges of the source merge into one piece.

use std::collections::VecDeque;
use std::io::Write;
use std::ops::Range;

use parquet::errors::ParquetError;
use parquet::file::reader::{ChunkReader, Length};

/// A piece of the new file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    /// Bytes written by the Parquet writer.
    Bytes(Vec<u8>),
    /// These bytes of the source file (end exclusive), unchanged.
    Source(Range<u64>),
}

/// A range of the output to take from the source instead.
#[derive(Debug)]
struct Window {
    /// Offsets in the new file (end exclusive).
    out: Range<u64>,
    /// Offset in the source of `out.start`.
    source: u64,
}

/// The sink of the Parquet writer: keeps what it is given, except in the registered
/// [`skip`](Spliced::skip) windows, whose bytes become [`Piece::Source`] ranges.
#[derive(Debug, Default)]
pub(crate) struct Spliced {
    /// Bytes received so far (the writer's offset of the next byte).
    pos: u64,
    current: Vec<u8>,
    pieces: Vec<Piece>,
    windows: VecDeque<Window>,
}

impl Spliced {
    /// The `len` bytes the writer writes at offset `out` of the new file are bytes
    /// `source..source + len` of the source file: drop them, keep the range. Windows are
    /// registered in order and before their bytes arrive.
    pub(crate) fn skip(&mut self, out: u64, len: u64, source: u64) {
        debug_assert!(out >= self.pos, "a window behind the bytes already written");
        if len > 0 {
            self.windows.push_back(Window {
                out: out..out + len,
                source,
            });
        }
    }

    fn push_source(&mut self, range: Range<u64>) {
        if !self.current.is_empty() {
            self.pieces
                .push(Piece::Bytes(std::mem::take(&mut self.current)));
        }
        match self.pieces.last_mut() {
            Some(Piece::Source(last)) if last.end == range.start => last.end = range.end,
            _ => self.pieces.push(Piece::Source(range)),
        }
    }

    /// The pieces received since the last call (the writer must have been flushed).
    ///
    /// # Errors
    /// A sentence when a registered window was not (completely) written: the writer did not
    /// place the chunks where they were expected.
    pub(crate) fn take_pieces(&mut self) -> Result<Vec<Piece>, String> {
        if let Some(w) = self.windows.front() {
            return Err(format!(
                "bytes {}..{} of the new file were expected from the source, the writer is at {}",
                w.out.start, w.out.end, self.pos
            ));
        }
        if !self.current.is_empty() {
            self.pieces
                .push(Piece::Bytes(std::mem::take(&mut self.current)));
        }
        Ok(std::mem::take(&mut self.pieces))
    }

    /// The bytes received since the last call, when no window was involved.
    ///
    /// # Errors
    /// A sentence when there are source pieces (use [`take_pieces`](Self::take_pieces)).
    pub(crate) fn take_bytes(&mut self) -> Result<Vec<u8>, String> {
        if !self.pieces.is_empty() || !self.windows.is_empty() {
            return Err("the new file holds unfetched source ranges here".into());
        }
        Ok(std::mem::take(&mut self.current))
    }
}

impl Write for Spliced {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut rest = buf;
        while !rest.is_empty() {
            let n = match self.windows.front() {
                Some(w) if self.pos >= w.out.start => {
                    let n = (w.out.end - self.pos).min(rest.len() as u64);
                    let from = w.source + (self.pos - w.out.start);
                    let done = self.pos + n == w.out.end;
                    self.push_source(from..from + n);
                    if done {
                        self.windows.pop_front();
                    }
                    n as usize
                }
                Some(w) => {
                    let n = ((w.out.start - self.pos) as usize).min(rest.len());
                    self.current.extend_from_slice(&rest[..n]);
                    n
                }
                None => {
                    self.current.extend_from_slice(rest);
                    rest.len()
                }
            };
            self.pos += n as u64;
            rest = &rest[n..];
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The column chunks of a row group that was not fetched, as the Parquet writer's copy reads
/// them: zeros, which [`Spliced`] drops (its windows cover exactly these chunks).
pub(crate) struct Unfetched {
    /// Size of the source file in bytes.
    pub(crate) file_len: u64,
}

impl Length for Unfetched {
    fn len(&self) -> u64 {
        self.file_len
    }
}

impl ChunkReader for Unfetched {
    type T = std::io::Repeat;

    fn get_read(&self, _start: u64) -> parquet::errors::Result<Self::T> {
        Ok(std::io::repeat(0))
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<bytes::Bytes> {
        Err(ParquetError::General(format!(
            "bytes {start}..{} of the file were not fetched (copied as they are)",
            start + length as u64
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_become_source_ranges_and_adjacent_ranges_merge() {
        let mut s = Spliced::default();
        s.write_all(b"PAR1").unwrap();
        s.skip(4, 6, 100);
        s.skip(10, 4, 106);
        s.skip(16, 2, 200);
        s.write_all(&[0; 5]).unwrap();
        s.write_all(&[0; 5]).unwrap();
        s.write_all(b"xy").unwrap();
        s.write_all(&[0, 0, 9]).unwrap();
        assert_eq!(
            s.take_pieces().unwrap(),
            vec![
                Piece::Bytes(b"PAR1".to_vec()),
                Piece::Source(100..110),
                Piece::Bytes(b"xy".to_vec()),
                Piece::Source(200..202),
                Piece::Bytes(vec![9]),
            ]
        );
        s.write_all(b"footer").unwrap();
        assert_eq!(s.take_bytes().unwrap(), b"footer".to_vec());
    }

    #[test]
    fn a_window_not_written_is_an_error() {
        let mut s = Spliced::default();
        s.skip(0, 10, 4);
        s.write_all(&[0; 3]).unwrap();
        assert!(s.take_pieces().is_err());
        assert!(s.take_bytes().is_err());
    }
}
