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
//! Chunks this path does not handle (INT96 and BOOLEAN columns, signed byte arrays such as
//! decimals, FLOAT16, DELTA and BYTE_STREAM_SPLIT encodings, BIT_PACKED levels, pages it cannot
//! tile) are left to the typed column writer ([`super::levels`]); nothing has been written then.

use std::collections::BTreeSet;
use std::io::Write;
use std::ops::Range;

use bytes::Bytes;
use parquet::basic::{Encoding, Type as PhysicalType};
use parquet::bloom_filter::Sbbf;
use parquet::column::page::{CompressedPage, Page, PageReader, PageWriter};
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::Result;
use parquet::file::metadata::{ColumnChunkMetaData, ColumnIndexBuilder, OffsetIndexBuilder};
use parquet::file::writer::{SerializedPageWriter, TrackedWrite};
use parquet::schema::types::ColumnDescPtr;

use super::codec::PageCodec;
use super::order::{Bounds, Order};
use super::page_parts::{
    DataPage, Dictionary, Layout, SeenValues, Values, boundary_order, compress, corrupt,
    decode_indices, decode_levels, dictionary_page_bounds, encode_page, kept_runs, plain_extent,
    plain_ranges,
};
use super::thrift::split_pages;

/// What to filter: one column chunk of an affected row group.
pub(crate) struct ChunkJob<'a> {
    /// The column.
    pub descr: &'a ColumnDescPtr,
    /// The chunk's metadata in the input.
    pub source: &'a ColumnChunkMetaData,
    /// The chunk's encoded bytes (dictionary page, if any, to the end of its data pages).
    pub raw: Bytes,
    /// Per record of the row group: kept or not.
    pub keep: &'a [bool],
    /// Write a column index (the input had one for this column).
    pub column_index: bool,
    /// Write an offset index (the input had one: its pages start at record boundaries).
    pub offset_index: bool,
    /// Build a bloom filter of this many distinct values at this false-positive rate.
    pub bloom: Option<(u64, f64)>,
    /// Pages left unchanged may be copied as encoded bytes (false when the input's writer is
    /// known to write wrong statistics, which their headers may carry).
    pub copy_unchanged: bool,
}

/// A filtered chunk, ready for `SerializedRowGroupWriter::append_column`.
pub(crate) struct FilteredChunk {
    /// Its encoded bytes (offsets in `close` are relative to them).
    pub bytes: Bytes,
    /// Its metadata, page index and bloom filter.
    pub close: ColumnCloseResult,
    /// Records read from the input chunk.
    pub records: usize,
    /// Data pages copied as encoded bytes.
    pub pages_copied: usize,
    /// Data pages encoded again.
    pub pages_encoded: usize,
}

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
    let descr = job.descr;
    let Some(order) = Order::of(descr) else {
        return Ok(declined(
            job,
            "its sort order is not one the page filter computes statistics for",
        ));
    };
    let layout = match descr.physical_type() {
        PhysicalType::INT32 | PhysicalType::FLOAT => Layout::Fixed(4),
        PhysicalType::INT64 | PhysicalType::DOUBLE => Layout::Fixed(8),
        PhysicalType::FIXED_LEN_BYTE_ARRAY => {
            Layout::Fixed(usize::try_from(descr.type_length()).unwrap_or(0))
        }
        PhysicalType::BYTE_ARRAY => Layout::Var,
        _ => return Ok(declined(job, "its physical type is INT96 or BOOLEAN")),
    };
    let Some(mut codec) = PageCodec::new(job.source.compression()) else {
        return Ok(declined(
            job,
            "its codec (LZ4 with Hadoop framing, or LZO) is not one the page filter writes",
        ));
    };
    let Ok(raw_pages) = split_pages(&job.raw) else {
        return Ok(declined(job, "its pages do not split by their headers"));
    };
    let (max_def, max_rep) = (descr.max_def_level(), descr.max_rep_level());

    // Read and filter every page.
    let mut dict: Option<Dictionary> = None;
    let mut data: Vec<DataPage> = Vec::new();
    let mut record = 0usize;
    let mut current_kept = true;
    let mut next_raw = raw_pages.into_iter();
    while let Some(page) = pages.get_next_page()? {
        let Some(raw) = next_raw.next() else {
            return Ok(declined(
                job,
                "the reader returned more pages than the headers hold",
            ));
        };
        let (buf, n, encoding, reps, defs, v2) = match page {
            Page::DictionaryPage {
                buf,
                num_values,
                encoding,
                is_sorted,
            } => {
                if dict.is_some() || !data.is_empty() {
                    return Ok(declined(job, "a second dictionary page"));
                }
                let entries = plain_ranges(layout, &buf, num_values as usize)?;
                dict = Some(Dictionary {
                    raw,
                    buf,
                    entries,
                    encoding,
                    is_sorted,
                });
                continue;
            }
            Page::DataPage {
                buf,
                num_values,
                encoding,
                def_level_encoding,
                rep_level_encoding,
                ..
            } => {
                let n = num_values as usize;
                let mut at = 0usize;
                let mut v1_levels = |max: i16, enc: Encoding| -> Result<Option<Vec<i16>>> {
                    if max == 0 {
                        return Ok(Some(Vec::new()));
                    }
                    if enc != Encoding::RLE {
                        return Ok(None);
                    }
                    let len = buf
                        .get(at..at + 4)
                        .map(|b| u32::from_le_bytes(b.try_into().unwrap_or_default()) as usize)
                        .filter(|len| at + 4 + len <= buf.len())
                        .ok_or_else(|| corrupt("a page's levels run past it"))?;
                    let levels = decode_levels(buf.slice(at + 4..at + 4 + len), max, n)?;
                    at += 4 + len;
                    Ok(Some(levels))
                };
                let Some(reps) = v1_levels(max_rep, rep_level_encoding)? else {
                    return Ok(declined(job, "its repetition levels are not RLE"));
                };
                let Some(defs) = v1_levels(max_def, def_level_encoding)? else {
                    return Ok(declined(job, "its definition levels are not RLE"));
                };
                (buf.slice(at..), n, encoding, reps, defs, None)
            }
            Page::DataPageV2 {
                buf,
                num_values,
                encoding,
                def_levels_byte_len,
                rep_levels_byte_len,
                is_compressed,
                ..
            } => {
                let n = num_values as usize;
                let (r, d) = (rep_levels_byte_len as usize, def_levels_byte_len as usize);
                if r + d > buf.len() {
                    return Err(corrupt("a page's levels run past it"));
                }
                let reps = if max_rep > 0 {
                    decode_levels(buf.slice(..r), max_rep, n)?
                } else {
                    Vec::new()
                };
                let defs = if max_def > 0 {
                    decode_levels(buf.slice(r..r + d), max_def, n)?
                } else {
                    Vec::new()
                };
                (
                    buf.slice(r + d..),
                    n,
                    encoding,
                    reps,
                    defs,
                    Some(is_compressed),
                )
            }
        };
        let present = if max_def > 0 {
            defs.iter().filter(|&&d| d == max_def).count()
        } else {
            n
        };
        let values = match encoding {
            Encoding::PLAIN_DICTIONARY | Encoding::RLE_DICTIONARY => {
                let Some(d) = &dict else {
                    return Err(corrupt("a dictionary-encoded page without a dictionary"));
                };
                let (indices, width) = decode_indices(&buf, present, d.entries.len())?;
                Values::Indices(indices, width)
            }
            Encoding::PLAIN => {
                let ranges = plain_ranges(layout, &buf, present)?;
                Values::Plain(buf, ranges)
            }
            _ => {
                return Ok(declined(
                    job,
                    "a page's value encoding is not PLAIN or dictionary",
                ));
            }
        };
        // Which levels are kept: records start at repetition level 0.
        let mut kept_levels: Vec<Range<usize>> = Vec::new();
        let mut kept_values: Vec<Range<usize>> = Vec::new();
        let mut rows = 0usize;
        if max_rep == 0 {
            // One level per record: the kept runs come from the record mask alone, and values
            // are counted only where a run is cut.
            let keep = job
                .keep
                .get(record..record + n)
                .ok_or_else(|| corrupt("the column holds more records than its row group says"))?;
            record += n;
            kept_levels = kept_runs(keep);
            rows = kept_levels.iter().map(ExactSizeIterator::len).sum();
            kept_values = if rows == n {
                std::iter::once(0..present).collect()
            } else if max_def == 0 {
                kept_levels.clone()
            } else {
                let (mut level, mut value) = (0usize, 0usize);
                let mut value_at = |to: usize| {
                    value += defs[level..to].iter().filter(|&&d| d == max_def).count();
                    level = to;
                    value
                };
                kept_levels
                    .iter()
                    .map(|r| {
                        let start = value_at(r.start);
                        start..value_at(r.end)
                    })
                    .collect()
            };
            current_kept = keep.last().copied().unwrap_or(current_kept);
        } else {
            let mut value = 0usize;
            let (mut run_start, mut run_value) = (0usize, 0usize);
            let mut run_kept = current_kept;
            for l in 0..n {
                if reps[l] == 0 {
                    let k = *job.keep.get(record).ok_or_else(|| {
                        corrupt("the column holds more records than its row group says")
                    })?;
                    record += 1;
                    rows += usize::from(k);
                    if k != run_kept {
                        if run_kept {
                            kept_levels.push(run_start..l);
                            kept_values.push(run_value..value);
                        }
                        (run_start, run_value, run_kept) = (l, value, k);
                    }
                    current_kept = k;
                }
                if max_def == 0 || defs[l] == max_def {
                    value += 1;
                }
            }
            if run_kept {
                kept_levels.push(run_start..n);
                kept_values.push(run_value..value);
            }
        }
        let levels: usize = kept_levels.iter().map(ExactSizeIterator::len).sum();
        let changed = levels != n;
        let pick = |v: Vec<i16>| -> Vec<i16> {
            if v.is_empty() || !changed {
                return v;
            }
            kept_levels
                .iter()
                .flat_map(|r| v[r.clone()].iter().copied())
                .collect()
        };
        let (reps, defs) = (pick(reps), pick(defs));
        let values = if !changed {
            values
        } else {
            match values {
                Values::Indices(ix, w) => Values::Indices(
                    kept_values
                        .iter()
                        .flat_map(|r| ix[r.clone()].iter().copied())
                        .collect(),
                    w,
                ),
                Values::Plain(buf, ranges) => {
                    let mut out = Vec::new();
                    let mut out_ranges = Vec::new();
                    for r in &kept_values {
                        if r.is_empty() {
                            continue;
                        }
                        let first = plain_extent(layout, &ranges[r.start]).start;
                        let last = ranges[r.end - 1].end;
                        let shift = out.len();
                        out.extend_from_slice(&buf[first..last]);
                        out_ranges.extend(
                            ranges[r.clone()]
                                .iter()
                                .map(|x| x.start - first + shift..x.end - first + shift),
                        );
                    }
                    Values::Plain(Bytes::from(out), out_ranges)
                }
            }
        };
        if levels > 0 {
            data.push(DataPage {
                raw,
                v2,
                encoding,
                reps,
                defs,
                levels,
                rows,
                values,
                changed,
            });
        }
    }
    if next_raw.next().is_some() {
        return Ok(declined(
            job,
            "the reader returned fewer pages than the headers hold",
        ));
    }

    // The dictionary: values no kept row references are removed, each hole filled with the
    // last values, so only pages referencing a moved value change.
    let used: Vec<bool> = match &dict {
        Some(d) => {
            let mut used = vec![false; d.entries.len()];
            for p in &data {
                if let Values::Indices(ix, _) = &p.values {
                    for &i in ix {
                        used[i as usize] = true;
                    }
                }
            }
            used
        }
        None => Vec::new(),
    };
    // `slots[new id] = old id` and `moved[old id]`, when the dictionary changes.
    let mut slots: Option<Vec<usize>> = None;
    let mut remap: Option<Vec<u32>> = None;
    let mut moved = vec![false; used.len()];
    let size = used.iter().filter(|&&u| u).count();
    if size < used.len() {
        if size == 0 {
            return Ok(declined(job, "no value of its dictionary is left"));
        }
        let holes = (0..size).filter(|&i| !used[i]);
        let movers = (size..used.len()).filter(|&i| used[i]);
        let mut new_slots: Vec<usize> = (0..size).collect();
        let mut map: Vec<u32> = (0..used.len() as u32).collect();
        for (hole, mover) in holes.zip(movers) {
            new_slots[hole] = mover;
            map[mover] = hole as u32;
            moved[mover] = true;
        }
        slots = Some(new_slots);
        remap = Some(map);
    }

    // Statistics, page index and bloom filter of the values kept.
    let need_stats = job.source.statistics().is_some() || job.column_index;
    let mut chunk_bounds = Bounds::default();
    let mut page_bounds = Vec::with_capacity(data.len());
    let mut bloom = match job.bloom {
        Some((ndv, fpp)) => Some(Sbbf::new_with_ndv_fpp(ndv, fpp)?),
        None => None,
    };
    let mut seen: Option<SeenValues> = None;
    for p in &data {
        let mut b = Bounds::default();
        let present = match &p.values {
            Values::Indices(ix, _) => ix.len(),
            Values::Plain(_, r) => r.len(),
        };
        b.nulls = (p.levels - present) as u64;
        if need_stats || bloom.is_some() {
            match &p.values {
                // Per page only for a column index; the chunk's bounds come from the
                // dictionary values still used (below), one comparison per value.
                Values::Indices(ix, _) => {
                    if let (Some(d), true) = (&dict, job.column_index) {
                        let seen = seen.get_or_insert_with(|| SeenValues::new(order, d));
                        dictionary_page_bounds(order, d, ix, &mut b, seen);
                    }
                }
                Values::Plain(buf, ranges) => {
                    // Fixed-width values lie packed one after the other.
                    let packed = match (layout, ranges.first(), ranges.last()) {
                        (Layout::Fixed(w), Some(first), Some(last))
                            if last.end - first.start == w * ranges.len() =>
                        {
                            Some((w, &buf[first.start..last.end]))
                        }
                        _ => None,
                    };
                    if let (true, Some((w, values))) = (need_stats, packed) {
                        b.add_packed(order, w, values);
                    }
                    let one_by_one = need_stats && packed.is_none();
                    let each = one_by_one || bloom.is_some();
                    for r in ranges.iter().filter(|_| each) {
                        let v = &buf[r.clone()];
                        if one_by_one {
                            b.add(order, v);
                        }
                        if let Some(bf) = &mut bloom {
                            bf.insert(v);
                        }
                    }
                }
            }
        }
        chunk_bounds.merge(order, &b);
        page_bounds.push(b);
    }
    if let (Some(d), true, false) = (&dict, need_stats, job.column_index) {
        let mut from_dictionary = Bounds::default();
        for (i, r) in d.entries.iter().enumerate() {
            if used[i] {
                from_dictionary.add(order, &d.buf[r.clone()]);
            }
        }
        from_dictionary.values = 0;
        chunk_bounds.merge(order, &from_dictionary);
    }
    if let (Some(bf), Some(d)) = (&mut bloom, &dict) {
        for (i, r) in d.entries.iter().enumerate() {
            if used[i] {
                bf.insert(&d.buf[r.clone()]);
            }
        }
    }

    // Write the chunk.
    let codec_kind = job.source.compression();
    let mut sink = TrackedWrite::new(Vec::new());
    let mut encodings = BTreeSet::new();
    let (mut compressed, mut uncompressed) = (0usize, 0usize);
    let mut dictionary_offset = None;
    if let Some(d) = &dict {
        dictionary_offset = Some(0i64);
        encodings.insert(d.encoding);
        match &slots {
            None => {
                sink.write_all(&job.raw[d.raw.range.clone()])?;
                compressed += d.raw.range.len();
                uncompressed += d.raw.header_len + d.raw.uncompressed_size;
            }
            Some(slots) => {
                let mut plain = Vec::new();
                for &i in slots {
                    plain.extend_from_slice(&d.buf[plain_extent(layout, &d.entries[i])]);
                }
                let body = compress(&mut codec, &plain)?;
                let page = Page::DictionaryPage {
                    buf: Bytes::from(body),
                    num_values: slots.len() as u32,
                    encoding: d.encoding,
                    is_sorted: d.is_sorted && !moved.contains(&true),
                };
                let spec = SerializedPageWriter::new(&mut sink)
                    .write_page(CompressedPage::new(page, plain.len()))?;
                compressed += spec.compressed_size as usize;
                uncompressed += spec.uncompressed_size as usize;
            }
        }
    }
    let data_page_offset = sink.bytes_written() as i64;
    let mut offsets = OffsetIndexBuilder::new();
    let mut column_index = ColumnIndexBuilder::new(descr.physical_type());
    let (mut pages_copied, mut pages_encoded, mut num_values, mut rows_total) = (0, 0, 0usize, 0);
    for (p, b) in data.iter().zip(&page_bounds) {
        let remapped = match (&p.values, &remap) {
            (Values::Indices(ix, _), Some(_)) => ix.iter().any(|&i| moved[i as usize]),
            _ => false,
        };
        let offset = sink.bytes_written() as i64;
        encodings.insert(p.encoding);
        // Level encoding: listed even for a required column, as the parquet crate's writer
        // lists it (V1 page headers always name RLE for their levels).
        encodings.insert(Encoding::RLE);
        if !p.changed && !remapped && job.copy_unchanged {
            sink.write_all(&job.raw[p.raw.range.clone()])?;
            compressed += p.raw.range.len();
            uncompressed += p.raw.header_len + p.raw.uncompressed_size;
            pages_copied += 1;
        } else {
            let page = encode_page(p, &mut codec, remap.as_deref(), (max_rep, max_def))?;
            let spec = SerializedPageWriter::new(&mut sink).write_page(page)?;
            compressed += spec.compressed_size as usize;
            uncompressed += spec.uncompressed_size as usize;
            pages_encoded += 1;
        }
        let size = sink.bytes_written() as i64 - offset;
        offsets.append_offset_and_size(offset, i32::try_from(size).map_err(corrupt)?);
        offsets.append_row_count(p.rows as i64);
        num_values += p.levels;
        rows_total += p.rows;
        match b.written_min_max() {
            Some((min, max)) => column_index.append(
                false,
                min,
                max,
                b.nulls as i64,
                order.is_float().then_some(b.nans as i64),
            ),
            None if b.values == b.nans && b.nans > 0 => column_index.to_invalid(),
            None => column_index.append(
                true,
                Vec::new(),
                Vec::new(),
                b.nulls as i64,
                order.is_float().then_some(b.nans as i64),
            ),
        }
    }
    column_index.set_boundary_order(boundary_order(order, &page_bounds));
    let bytes = Bytes::from(sink.into_inner()?);

    let mut meta = ColumnChunkMetaData::builder(descr.clone())
        .set_compression(codec_kind)
        .set_encodings(encodings.into_iter().collect())
        .set_total_compressed_size(compressed as i64)
        .set_total_uncompressed_size(uncompressed as i64)
        .set_num_values(num_values as i64)
        .set_data_page_offset(data_page_offset)
        .set_dictionary_page_offset(dictionary_offset);
    if job.source.statistics().is_some() {
        meta = meta.set_statistics(chunk_bounds.statistics(descr.physical_type()));
    }
    let close = ColumnCloseResult {
        bytes_written: bytes.len() as u64,
        rows_written: rows_total as u64,
        metadata: meta.build()?,
        bloom_filter: bloom,
        column_index: (job.column_index && column_index.valid())
            .then(|| column_index.build())
            .transpose()?,
        offset_index: (job.offset_index || job.column_index).then(|| offsets.build()),
    };
    Ok(Some(FilteredChunk {
        bytes,
        close,
        records: record,
        pages_copied,
        pages_encoded,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

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
