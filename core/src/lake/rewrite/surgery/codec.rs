//! Compression of the data pages the page filter encodes again, in the chunk's own codec and
//! framing as parquet-format defines them (`parquet.thrift`, `CompressionCodec`; framing as the
//! parquet crate writes it): SNAPPY raw blocks, GZIP (RFC 1952) streams, BROTLI streams
//! (window 2^22), ZSTD frames, LZ4_RAW blocks. The legacy LZ4 (Hadoop framing) and LZO are not
//! written here: their chunks go to the parquet crate's writer.
//!
//! Pages are read (and decompressed) by the parquet crate; only compression is done here, with
//! the same well-kept codec crates it uses.

use std::io::Write;

use parquet::basic::Compression;

/// A compressor for one column chunk's pages.
pub(crate) enum PageCodec {
    /// UNCOMPRESSED: the page as it is.
    None,
    Snappy(Box<snap::raw::Encoder>),
    Gzip(u32),
    Brotli(u32),
    Zstd(Box<zstd::bulk::Compressor<'static>>),
    Lz4Raw,
}

impl PageCodec {
    /// The compressor of `compression` at its level (the parquet crate's default level where
    /// the file does not say one: files never record it). `None` for a codec this module does
    /// not write.
    pub(crate) fn new(compression: Compression) -> Option<Self> {
        Some(match compression {
            Compression::UNCOMPRESSED => PageCodec::None,
            Compression::SNAPPY => PageCodec::Snappy(Box::new(snap::raw::Encoder::new())),
            Compression::GZIP(level) => PageCodec::Gzip(level.compression_level()),
            Compression::BROTLI(level) => PageCodec::Brotli(level.compression_level()),
            Compression::ZSTD(level) => PageCodec::Zstd(Box::new(
                zstd::bulk::Compressor::new(level.compression_level()).ok()?,
            )),
            Compression::LZ4_RAW => PageCodec::Lz4Raw,
            Compression::LZ4 | Compression::LZO => return None,
        })
    }

    /// `body` compressed.
    ///
    /// # Errors
    /// The codec's error, as text.
    pub(crate) fn compress(&mut self, body: &[u8]) -> Result<Vec<u8>, String> {
        let err = |e: std::io::Error| e.to_string();
        match self {
            PageCodec::None => Ok(body.to_vec()),
            PageCodec::Snappy(enc) => enc.compress_vec(body).map_err(|e| e.to_string()),
            PageCodec::Gzip(level) => {
                let mut enc = flate2::write::GzEncoder::new(
                    Vec::with_capacity(body.len() / 2),
                    flate2::Compression::new(*level),
                );
                enc.write_all(body).map_err(err)?;
                enc.finish().map_err(err)
            }
            PageCodec::Brotli(level) => {
                let mut out = Vec::with_capacity(body.len() / 2);
                {
                    let mut enc = brotli::CompressorWriter::new(&mut out, 4096, *level, 22);
                    enc.write_all(body).map_err(err)?;
                    enc.flush().map_err(err)?;
                }
                Ok(out)
            }
            PageCodec::Zstd(c) => c.compress(body).map_err(err),
            PageCodec::Lz4Raw => Ok(lz4_flex::block::compress(body)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;
    use parquet::basic::{BrotliLevel, GzipLevel, ZstdLevel};

    /// Each codec's own decoder (files written through this module are read back by the
    /// parquet crate in the rewrite tests).
    fn decompress(compression: Compression, data: &[u8], len: usize) -> Vec<u8> {
        let mut out = Vec::new();
        match compression {
            Compression::UNCOMPRESSED => out = data.to_vec(),
            Compression::SNAPPY => out = snap::raw::Decoder::new().decompress_vec(data).unwrap(),
            Compression::GZIP(_) => {
                flate2::read::GzDecoder::new(data)
                    .read_to_end(&mut out)
                    .unwrap();
            }
            Compression::BROTLI(_) => {
                brotli::Decompressor::new(data, 4096)
                    .read_to_end(&mut out)
                    .unwrap();
            }
            Compression::ZSTD(_) => out = zstd::bulk::decompress(data, len).unwrap(),
            Compression::LZ4_RAW => out = lz4_flex::block::decompress(data, len).unwrap(),
            other => panic!("{other:?}"),
        }
        out
    }

    #[test]
    fn every_codec_written_here_decodes_with_its_own_decoder() {
        let body: Vec<u8> = (0..50_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        for compression in [
            Compression::UNCOMPRESSED,
            Compression::SNAPPY,
            Compression::GZIP(GzipLevel::default()),
            Compression::BROTLI(BrotliLevel::default()),
            Compression::ZSTD(ZstdLevel::try_new(3).unwrap()),
            Compression::LZ4_RAW,
        ] {
            let compressed = PageCodec::new(compression)
                .unwrap()
                .compress(&body)
                .unwrap();
            if compression != Compression::UNCOMPRESSED {
                assert!(compressed.len() < body.len() / 2, "{compression:?}");
            }
            assert_eq!(
                decompress(compression, &compressed, body.len()),
                body,
                "{compression:?}"
            );
        }
        assert!(PageCodec::new(Compression::LZ4).is_none());
    }
}
