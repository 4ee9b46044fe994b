//! One column chunk of an affected row group filtered page by page, without decoding its
//! values into typed arrays and without building a new dictionary:
//!
//! - each data page's repetition and definition levels are decoded, the records to remove
//!   (cut at repetition level 0) are dropped, with their values: dictionary indices for a
//!   dictionary-encoded page, plain-encoded values otherwise;
//! - a page that keeps every record and whose indices do not change is **copied as its encoded
//!   bytes** (header and body, no compression); only the pages that lost a record are encoded and
//!   compressed again, in the page format (V1 or V2) and value encoding they had;
//! - the **dictionary page is kept as it is** unless a value of it is left with no row: such
//!   values are removed from it (an erased subject's id or e-mail must not stay in the file),
//!   each hole filled with the dictionary's last value, so only the pages referencing a moved
//!   value are encoded again;
//! - statistics, page index and bloom filter are computed from the values kept (never carried
//!   over: a minimum or a bloom filter bit may be the erased subject's).
//!
//! FLOAT and DOUBLE chunks get the statistics the parquet crate would write for them (it
//! declares `IEEE_754_TOTAL_ORDER` for them in every file): min and max by total order, NaN
//! counted and left out unless every value is NaN ([`super::order`]).
//!
//! The chunk's pages are read and filtered by [`super::page_read`], then written by
//! [`super::page_write`].
//!
//! Chunks this path does not handle (INT96 and BOOLEAN columns, signed byte arrays such as
//! decimals, FLOAT16, DELTA and BYTE_STREAM_SPLIT encodings, BIT_PACKED levels, pages it cannot
//! tile) are left to the typed column writer ([`super::levels`]); nothing has been written then.

use parquet::basic::Type as PhysicalType;
use parquet::column::page::PageReader;
use parquet::errors::Result;

use super::chunk_job::Stop;
pub(crate) use super::chunk_job::{ChunkJob, FilteredChunk};
use super::codec::{LevelSample, PageCodec, infer_level};
use super::order::Order;
use super::page_parts::Layout;
use super::page_read::read_chunk;
use super::page_write::{KeptStatistics, Remap, write_chunk};
use super::thrift::split_pages;

/// Logs why a chunk is left to the typed writer; `None`.
fn declined(job: &ChunkJob<'_>, reason: &'static str) -> Option<FilteredChunk> {
    tracing::debug!(
        column = %job.descr.path().string(),
        reason,
        "column chunk left to the typed column writer"
    );
    None
}

/// Filters one column chunk; `Ok(None)` when the chunk is one this path leaves to the typed
/// writer (nothing is written then).
///
/// # Errors
/// The page reader's errors, and pages whose levels or values do not decode.
pub(crate) fn filter_chunk(
    pages: &mut dyn PageReader,
    job: &ChunkJob<'_>,
) -> Result<Option<FilteredChunk>> {
    match filter(pages, job) {
        Ok(chunk) => Ok(Some(chunk)),
        Err(Stop::Declined(reason)) => Ok(declined(job, reason)),
        Err(Stop::Failed(e)) => Err(e),
    }
}

/// The page filter's steps: read and drop records, shrink the dictionary, compute the kept
/// values' statistics, write.
fn filter(pages: &mut dyn PageReader, job: &ChunkJob<'_>) -> Result<FilteredChunk, Stop> {
    let descr = job.descr;
    let order = Order::of(descr).ok_or(Stop::Declined(
        "its sort order is not one the page filter computes statistics for",
    ))?;
    let layout = match descr.physical_type() {
        PhysicalType::INT32 | PhysicalType::FLOAT => Layout::Fixed(4),
        PhysicalType::INT64 | PhysicalType::DOUBLE => Layout::Fixed(8),
        PhysicalType::FIXED_LEN_BYTE_ARRAY => {
            Layout::Fixed(usize::try_from(descr.type_length()).unwrap_or(0))
        }
        PhysicalType::BYTE_ARRAY => Layout::Var,
        _ => return Err(Stop::Declined("its physical type is INT96 or BOOLEAN")),
    };
    if PageCodec::new(job.source.compression()).is_none() {
        return Err(Stop::Declined(
            "its codec (LZ4 with Hadoop framing, or LZO) is not one the page filter writes",
        ));
    }
    let raw_pages = split_pages(&job.raw)
        .map_err(|_| Stop::Declined("its pages do not split by their headers"))?;
    let read = read_chunk(pages, job, layout, raw_pages)?;
    // Pages encoded again are compressed at the level the writer used, where it shows.
    let compression = infer_level(
        job.source.compression(),
        job.created_by,
        &descr.path().string(),
        || {
            read.sample
                .as_ref()
                .map(|(body, uncompressed)| LevelSample {
                    compressed: &job.raw[body.clone()],
                    uncompressed,
                })
        },
    );
    let codec = PageCodec::new(compression).ok_or(Stop::Declined(
        "its codec is not one the page filter writes",
    ))?;
    let remap = Remap::of(read.dict.as_ref(), &read.data)?;
    let stats = KeptStatistics::of(job, order, layout, &read, &remap)?;
    Ok(write_chunk(
        job,
        (order, layout),
        codec,
        read,
        &remap,
        stats,
    )?)
}

#[cfg(test)]
mod tests {
    use std::ops::Range;

    use super::super::page_parts::kept_runs;

    #[test]
    fn kept_runs_are_the_runs_between_removed_records() {
        let mask = |s: &str| s.bytes().map(|b| b == b'k').collect::<Vec<bool>>();
        assert_eq!(kept_runs(&mask("kkkk")), vec![0..4]);
        assert_eq!(kept_runs(&mask("rrrr")), Vec::<Range<usize>>::new());
        assert_eq!(kept_runs(&mask("rkkrrkr")), [1..3, 5..6]);
        assert_eq!(kept_runs(&mask("kkrk")), [0..2, 3..4]);
        assert_eq!(kept_runs(&[]), Vec::<Range<usize>>::new());
    }
}
