//! Compression of the data pages the page filter encodes again, in the chunk's own codec and
//! framing as parquet-format defines them (`parquet.thrift`, `CompressionCodec`; framing as the
//! parquet crate writes it): SNAPPY raw blocks, GZIP (RFC 1952) streams, BROTLI streams
//! (window 2^22), ZSTD frames, LZ4_RAW blocks. The legacy LZ4 (Hadoop framing) and LZO are not
//! written here: their chunks go to the parquet crate's writer.
//!
//! Pages are read (and decompressed) by the parquet crate; only compression is done here, with
//! the same well-kept codec crates it uses.
//!
//! Files record a chunk's codec but not its level. The level of ZSTD, GZIP and BROTLI chunks
//! is inferred ([`infer_level`]): one page of the chunk is compressed again at each likely
//! level, and the level whose output is the page's own bytes wins (else the one closest in
//! size). Inferred once per writer (`created_by`), column and codec in a process.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{LazyLock, Mutex};

use parquet::basic::{BrotliLevel, Compression, GzipLevel, ZstdLevel};

/// A page compressed by the original writer: its compressed body and the same body
/// decompressed.
pub(crate) struct LevelSample<'a> {
    /// The page body as the file holds it.
    pub compressed: &'a [u8],
    /// The page body decompressed.
    pub uncompressed: &'a [u8],
}

/// Levels inferred so far, by writer, column path and codec.
type Inferred = HashMap<(String, String, &'static str), Compression>;
static INFERRED: LazyLock<Mutex<Inferred>> = LazyLock::new(Mutex::default);

/// The levels tried, most common first: ZSTD 1 (Arrow C++ and pyarrow, parquet-rs) and 3
/// (parquet-mr, Spark, DuckDB), GZIP 6 (zlib's default), BROTLI 1 (parquet-rs) and 8
/// (Arrow C++). Slow levels (ZSTD above 9, BROTLI 10 and 11) only for small samples.
fn candidates(compression: Compression, sample_len: usize) -> Vec<Compression> {
    let small = sample_len <= 32 * 1024;
    match compression {
        Compression::ZSTD(_) => [1, 3, 2, 4, 5, 6, 7, 8, 9]
            .into_iter()
            .chain((10..=19).filter(|_| small))
            .filter_map(|l| ZstdLevel::try_new(l).ok().map(Compression::ZSTD))
            .collect(),
        Compression::GZIP(_) => [6, 1, 2, 3, 4, 5, 7, 8, 9]
            .into_iter()
            .filter_map(|l| GzipLevel::try_new(l).ok().map(Compression::GZIP))
            .collect(),
        Compression::BROTLI(_) => [1, 8, 0, 2, 3, 4, 5, 6, 7, 9]
            .into_iter()
            .chain((10..=11).filter(|_| small))
            .filter_map(|l| BrotliLevel::try_new(l).ok().map(Compression::BROTLI))
            .collect(),
        _ => Vec::new(),
    }
}

/// `compression` at the level its writer used, as far as one page tells: each candidate
/// level compresses `sample()` again; the first whose output is the page's own bytes wins,
/// else the one whose output is closest in size. Codecs without levels, and chunks without a
/// sample, keep `compression` (the parquet crate's default level). Remembered per `writer`
/// (the file's `created_by`), `column` and codec for the rest of the process.
pub(crate) fn infer_level<'a>(
    compression: Compression,
    writer: Option<&str>,
    column: &str,
    sample: impl FnOnce() -> Option<LevelSample<'a>>,
) -> Compression {
    let family = match compression {
        Compression::ZSTD(_) => "zstd",
        Compression::GZIP(_) => "gzip",
        Compression::BROTLI(_) => "brotli",
        other => return other,
    };
    let key = (
        writer.unwrap_or_default().to_string(),
        column.to_string(),
        family,
    );
    if let Some(known) = INFERRED.lock().ok().and_then(|m| m.get(&key).copied()) {
        return known;
    }
    let Some(sample) = sample() else {
        return compression;
    };
    let mut best: Option<(usize, Compression)> = None;
    for candidate in candidates(compression, sample.uncompressed.len()) {
        let Some(Ok(out)) = PageCodec::new(candidate).map(|mut c| c.compress(sample.uncompressed))
        else {
            continue;
        };
        if out == sample.compressed {
            best = Some((0, candidate));
            break;
        }
        let distance = out.len().abs_diff(sample.compressed.len());
        if best.is_none_or(|(d, _)| distance < d) {
            best = Some((distance, candidate));
        }
    }
    let Some((distance, level)) = best else {
        return compression;
    };
    tracing::debug!(
        column,
        ?level,
        exact = distance == 0,
        "compression level inferred"
    );
    if let Ok(mut m) = INFERRED.lock() {
        m.insert(key, level);
    }
    level
}

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

    #[test]
    fn the_level_a_page_was_compressed_at_is_found_again_and_remembered() {
        let body: Vec<u8> = (0..40_000u32)
            .flat_map(|i| format!("user-{:05},", i % 997).into_bytes())
            .collect();
        for level in [
            Compression::ZSTD(ZstdLevel::try_new(3).unwrap()),
            Compression::ZSTD(ZstdLevel::try_new(7).unwrap()),
            Compression::BROTLI(BrotliLevel::try_new(5).unwrap()),
        ] {
            let page = PageCodec::new(level).unwrap().compress(&body).unwrap();
            // The footer says only the codec: the parquet crate reads it at its default level.
            let footer = match level {
                Compression::ZSTD(_) => Compression::ZSTD(ZstdLevel::default()),
                _ => Compression::BROTLI(BrotliLevel::default()),
            };
            let column = format!("c-{level:?}");
            let inferred = infer_level(footer, Some("w"), &column, || {
                Some(LevelSample {
                    compressed: &page,
                    uncompressed: &body,
                })
            });
            // The level found writes the page's own bytes (two levels may share their
            // parameters on a small input: either is the right answer).
            let again = PageCodec::new(inferred).unwrap().compress(&body).unwrap();
            assert_eq!(again, page, "{level:?} inferred as {inferred:?}");
            assert_ne!(inferred, footer);
            // Remembered: no sample is asked for again.
            let remembered = infer_level(footer, Some("w"), &column, || unreachable!());
            assert_eq!(remembered, inferred);
        }
        // Codecs without levels are left as they are, without a sample.
        let snappy = infer_level(Compression::SNAPPY, None, "c", || unreachable!());
        assert_eq!(snappy, Compression::SNAPPY);
    }
}
