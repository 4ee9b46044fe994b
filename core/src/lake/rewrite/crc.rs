//! Hadoop `ChecksumFileSystem` sidecars (`.<name>.crc` beside `<name>`).
//!
//! Format (Hadoop `ChecksumFileSystem`): the magic `crc\0`, a big-endian `i32` bytes-per-checksum,
//! then one big-endian CRC-32 (zlib polynomial) per chunk of that many bytes of the data file
//! (the last chunk may be shorter). Spark and Hadoop verify it on read, so a rewrite must
//! rewrite the sidecar too or the file becomes unreadable to them.

/// Magic bytes at the start of a sidecar.
pub(crate) const MAGIC: &[u8; 4] = b"crc\0";

/// Bytes per checksum Hadoop uses by default.
pub(crate) const DEFAULT_BYTES_PER_CHECKSUM: u32 = 512;

/// The sidecar name for a data file name (`part-0.parquet` → `.part-0.parquet.crc`).
pub(crate) fn sidecar_name(name: &str) -> String {
    format!(".{name}.crc")
}

/// Bytes per checksum declared by an existing sidecar's header, or the default when the header
/// is missing or not a sidecar header.
pub(crate) fn bytes_per_checksum(header: &[u8]) -> u32 {
    match header {
        [m0, m1, m2, m3, a, b, c, d, ..] if [*m0, *m1, *m2, *m3] == *MAGIC => {
            match i32::from_be_bytes([*a, *b, *c, *d]) {
                n if n > 0 => n as u32,
                _ => DEFAULT_BYTES_PER_CHECKSUM,
            }
        }
        _ => DEFAULT_BYTES_PER_CHECKSUM,
    }
}

/// Computes a sidecar incrementally while the data file is being written.
#[derive(Debug)]
pub(crate) struct ChecksumWriter {
    bytes_per_checksum: usize,
    current: crc32fast::Hasher,
    filled: usize,
    out: Vec<u8>,
}

impl ChecksumWriter {
    /// A sidecar with chunks of `bytes_per_checksum` bytes.
    pub(crate) fn new(bytes_per_checksum: u32) -> Self {
        let mut out = Vec::with_capacity(8);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(bytes_per_checksum as i32).to_be_bytes());
        Self {
            bytes_per_checksum: bytes_per_checksum as usize,
            current: crc32fast::Hasher::new(),
            filled: 0,
            out,
        }
    }

    /// Feeds the next bytes of the data file.
    pub(crate) fn update(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let take = (self.bytes_per_checksum - self.filled).min(data.len());
            self.current.update(&data[..take]);
            self.filled += take;
            data = &data[take..];
            if self.filled == self.bytes_per_checksum {
                let done = std::mem::replace(&mut self.current, crc32fast::Hasher::new());
                self.out.extend_from_slice(&done.finalize().to_be_bytes());
                self.filled = 0;
            }
        }
    }

    /// The complete sidecar bytes.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        if self.filled > 0 {
            self.out
                .extend_from_slice(&self.current.finalize().to_be_bytes());
        }
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sidecar_matches_a_one_shot_computation_whatever_the_write_sizes() {
        let data: Vec<u8> = (0..2000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut w = ChecksumWriter::new(512);
        for piece in data.chunks(77) {
            w.update(piece);
        }
        let sidecar = w.finish();
        assert_eq!(&sidecar[..4], MAGIC);
        assert_eq!(bytes_per_checksum(&sidecar), 512);
        let expected: Vec<u8> = data
            .chunks(512)
            .flat_map(|c| crc32fast::hash(c).to_be_bytes())
            .collect();
        assert_eq!(&sidecar[8..], &expected[..]);
        assert_eq!(sidecar.len(), 8 + 4 * 4);
    }

    #[test]
    fn a_broken_header_falls_back_to_the_default() {
        assert_eq!(bytes_per_checksum(b"nope"), 512);
        assert_eq!(bytes_per_checksum(b"crc\0\0\0\x01\0"), 256);
    }
}
