//! Writing a filtered column chunk: the dictionary without the values no kept row references
//! ([`Remap`]), the statistics, page index and bloom filter of the values kept
//! ([`KeptStatistics`]), then the pages — unchanged ones copied as their encoded bytes, the
//! others encoded and compressed again ([`write_chunk`]).

use std::collections::BTreeSet;
use std::io::Write;

use bytes::Bytes;
use parquet::basic::Encoding;
use parquet::bloom_filter::Sbbf;
use parquet::column::page::{CompressedPage, Page, PageWriter};
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::Result;
use parquet::file::metadata::{ColumnChunkMetaData, ColumnIndexBuilder, OffsetIndexBuilder};
use parquet::file::writer::{SerializedPageWriter, TrackedWrite};

use super::chunk_job::{ChunkJob, FilteredChunk, Stop};
use super::codec::PageCodec;
use super::order::{Bounds, Order};
use super::page_parts::{
    DataPage, Dictionary, Layout, SeenValues, Values, boundary_order, compress, corrupt,
    dictionary_page_bounds, encode_page, plain_extent,
};
use super::page_read::ReadChunk;

/// How the dictionary changes: values no kept row references are removed, each hole filled
/// with one of the last values, so only pages referencing a moved value change.
#[derive(Default)]
pub(super) struct Remap {
    /// Per dictionary entry: a kept row references it.
    used: Vec<bool>,
    /// `slots[new id] = old id`, when the dictionary changes.
    slots: Option<Vec<usize>>,
    /// `map[old id] = new id`, when the dictionary changes.
    map: Option<Vec<u32>>,
    /// Per old id: the value moved to another slot.
    moved: Vec<bool>,
}

impl Remap {
    /// The remap of `dict` for the indices `data` keeps.
    ///
    /// # Errors
    /// [`Stop::Declined`] when no value of the dictionary is left.
    pub(super) fn of(dict: Option<&Dictionary>, data: &[DataPage]) -> Result<Self, Stop> {
        let Some(d) = dict else {
            return Ok(Self::default());
        };
        let mut used = vec![false; d.entries.len()];
        for p in data {
            if let Values::Indices(ix, _) = &p.values {
                for &i in ix {
                    used[i as usize] = true;
                }
            }
        }
        let mut moved = vec![false; used.len()];
        let size = used.iter().filter(|&&u| u).count();
        if size == used.len() {
            return Ok(Self {
                used,
                moved,
                ..Self::default()
            });
        }
        if size == 0 {
            return Err(Stop::Declined("no value of its dictionary is left"));
        }
        let holes = (0..size).filter(|&i| !used[i]);
        let movers = (size..used.len()).filter(|&i| used[i]);
        let mut slots: Vec<usize> = (0..size).collect();
        let mut map: Vec<u32> = (0..used.len() as u32).collect();
        for (hole, mover) in holes.zip(movers) {
            slots[hole] = mover;
            map[mover] = hole as u32;
            moved[mover] = true;
        }
        Ok(Self {
            used,
            slots: Some(slots),
            map: Some(map),
            moved,
        })
    }

    /// Whether `page` references a moved value (it must be encoded again).
    fn moves(&self, page: &DataPage) -> bool {
        match (&page.values, &self.map) {
            (Values::Indices(ix, _), Some(_)) => ix.iter().any(|&i| self.moved[i as usize]),
            _ => false,
        }
    }
}

/// The statistics, page bounds and bloom filter of the values kept.
pub(super) struct KeptStatistics {
    chunk: Bounds,
    pages: Vec<Bounds>,
    bloom: Option<Sbbf>,
}

impl KeptStatistics {
    /// Computes them from the kept pages of `read`, for what `job` writes.
    ///
    /// # Errors
    /// A bloom filter of the job's size that cannot be built.
    pub(super) fn of(
        job: &ChunkJob<'_>,
        order: Order,
        layout: Layout,
        read: &ReadChunk,
        remap: &Remap,
    ) -> Result<Self> {
        let need_stats = job.source.statistics().is_some() || job.column_index;
        let mut chunk = Bounds::default();
        let mut pages = Vec::with_capacity(read.data.len());
        let mut bloom = match job.bloom {
            Some((ndv, fpp)) => Some(Sbbf::new_with_ndv_fpp(ndv, fpp)?),
            None => None,
        };
        let mut seen: Option<SeenValues> = None;
        for p in &read.data {
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
                        if let (Some(d), true) = (&read.dict, job.column_index) {
                            let seen = seen.get_or_insert_with(|| SeenValues::new(order, d));
                            dictionary_page_bounds(order, d, ix, &mut b, seen);
                        }
                    }
                    Values::Plain(buf, ranges) => {
                        plain_page_bounds(
                            order, layout, need_stats, buf, ranges, &mut b, &mut bloom,
                        );
                    }
                }
            }
            chunk.merge(order, &b);
            pages.push(b);
        }
        if let (Some(d), true, false) = (&read.dict, need_stats, job.column_index) {
            let mut from_dictionary = Bounds::default();
            for (i, r) in d.entries.iter().enumerate() {
                if remap.used[i] {
                    from_dictionary.add(order, &d.buf[r.clone()]);
                }
            }
            from_dictionary.values = 0;
            chunk.merge(order, &from_dictionary);
        }
        if let (Some(bf), Some(d)) = (&mut bloom, &read.dict) {
            for (i, r) in d.entries.iter().enumerate() {
                if remap.used[i] {
                    bf.insert(&d.buf[r.clone()]);
                }
            }
        }
        Ok(Self {
            chunk,
            pages,
            bloom,
        })
    }
}

/// Adds the PLAIN values of one page to its bounds `b` (when statistics are needed) and to
/// the bloom filter.
fn plain_page_bounds(
    order: Order,
    layout: Layout,
    need_stats: bool,
    buf: &[u8],
    ranges: &[std::ops::Range<usize>],
    b: &mut Bounds,
    bloom: &mut Option<Sbbf>,
) {
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
        if let Some(bf) = bloom {
            bf.insert(v);
        }
    }
}

/// Writes the chunk: the dictionary page (as it was, or without its unused values), then
/// each kept data page — copied as its encoded bytes when it lost no record and references
/// no moved value, else encoded again — with the offset index, column index and metadata of
/// what was written.
///
/// # Errors
/// Encoding, compression and metadata errors of the parquet crate.
pub(super) fn write_chunk(
    job: &ChunkJob<'_>,
    (order, layout): (Order, Layout),
    mut codec: PageCodec,
    read: ReadChunk,
    remap: &Remap,
    stats: KeptStatistics,
) -> Result<FilteredChunk> {
    let descr = job.descr;
    let (max_def, max_rep) = (descr.max_def_level(), descr.max_rep_level());
    let mut sink = TrackedWrite::new(Vec::new());
    let mut encodings = BTreeSet::new();
    let (mut compressed, mut uncompressed) = (0usize, 0usize);
    let mut dictionary_offset = None;
    if let Some(d) = &read.dict {
        dictionary_offset = Some(0i64);
        encodings.insert(d.encoding);
        match &remap.slots {
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
                    is_sorted: d.is_sorted && !remap.moved.contains(&true),
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
    for (p, b) in read.data.iter().zip(&stats.pages) {
        let offset = sink.bytes_written() as i64;
        encodings.insert(p.encoding);
        // Level encoding: listed even for a required column, as the parquet crate's writer
        // lists it (V1 page headers always name RLE for their levels).
        encodings.insert(Encoding::RLE);
        if !p.changed && !remap.moves(p) && job.copy_unchanged {
            sink.write_all(&job.raw[p.raw.range.clone()])?;
            compressed += p.raw.range.len();
            uncompressed += p.raw.header_len + p.raw.uncompressed_size;
            pages_copied += 1;
        } else {
            let page = encode_page(p, &mut codec, remap.map.as_deref(), (max_rep, max_def))?;
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
        let nans = order.is_float().then_some(b.nans as i64);
        match b.written_min_max() {
            Some((min, max)) => column_index.append(false, min, max, b.nulls as i64, nans),
            None if b.values == b.nans && b.nans > 0 => column_index.to_invalid(),
            None => column_index.append(true, Vec::new(), Vec::new(), b.nulls as i64, nans),
        }
    }
    column_index.set_boundary_order(boundary_order(order, &stats.pages));
    let bytes = Bytes::from(sink.into_inner()?);

    let mut meta = ColumnChunkMetaData::builder(descr.clone())
        .set_compression(job.source.compression())
        .set_encodings(encodings.into_iter().collect())
        .set_total_compressed_size(compressed as i64)
        .set_total_uncompressed_size(uncompressed as i64)
        .set_num_values(num_values as i64)
        .set_data_page_offset(data_page_offset)
        .set_dictionary_page_offset(dictionary_offset);
    if job.source.statistics().is_some() {
        meta = meta.set_statistics(stats.chunk.statistics(descr.physical_type()));
    }
    let close = ColumnCloseResult {
        bytes_written: bytes.len() as u64,
        rows_written: rows_total as u64,
        metadata: meta.build()?,
        bloom_filter: stats.bloom,
        column_index: (job.column_index && column_index.valid())
            .then(|| column_index.build())
            .transpose()?,
        offset_index: (job.offset_index || job.column_index).then(|| offsets.build()),
    };
    Ok(FilteredChunk {
        bytes,
        close,
        records: read.records,
        pages_copied,
        pages_encoded,
    })
}
