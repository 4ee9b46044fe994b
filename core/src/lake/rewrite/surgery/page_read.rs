//! Reading one column chunk's pages and dropping the removed records from each: levels
//! decoded (RLE), records cut at repetition level 0, and with them their values — dictionary
//! indices, or the byte ranges of PLAIN values. Values are never decoded into typed arrays.

use std::ops::Range;

use bytes::Bytes;
use parquet::basic::Encoding;
use parquet::column::page::{Page, PageReader};

use super::chunk_job::{ChunkJob, Stop};
use super::page_parts::{
    DataPage, Dictionary, Layout, Values, corrupt, decode_indices, decode_levels, kept_runs,
    plain_extent, plain_ranges,
};
use super::thrift::RawPage;

/// Largest decompressed page body taken as the sample of a chunk's compression level.
const SAMPLE_LIMIT: usize = 256 * 1024;

/// A chunk's pages with the removed records dropped.
pub(super) struct ReadChunk {
    /// The dictionary page, as read.
    pub(super) dict: Option<Dictionary>,
    /// The data pages that keep at least one level.
    pub(super) data: Vec<DataPage>,
    /// Records read.
    pub(super) records: usize,
    /// The largest page up to [`SAMPLE_LIMIT`] with its whole body compressed (a dictionary
    /// page or a V1 data page): where its compressed body lies in the chunk, and the body
    /// decompressed; to infer the compression level from.
    pub(super) sample: Option<(Range<usize>, Bytes)>,
}

/// A data page as read, before filtering.
struct ReadPage {
    /// The encoded values.
    buf: Bytes,
    /// Levels (values and nulls).
    n: usize,
    encoding: Encoding,
    reps: Vec<i16>,
    defs: Vec<i16>,
    /// `Some(is_compressed)` for a DataPageV2.
    v2: Option<bool>,
}

/// Which levels and values of a page are kept.
struct KeptRanges {
    levels: Vec<Range<usize>>,
    values: Vec<Range<usize>>,
    /// Records that start in the page and are kept.
    rows: usize,
}

/// Where the reading is in the row group's records.
struct Records<'a> {
    keep: &'a [bool],
    /// The next record to start.
    next: usize,
    /// Whether the record in progress (continued from an earlier page) is kept.
    current_kept: bool,
}

/// Reads every page of the chunk (`raw_pages` are the same pages as split by their headers)
/// and drops the records `job.keep` removes.
///
/// # Errors
/// [`Stop::Declined`] for pages this path leaves to the typed writer; [`Stop::Failed`] for
/// pages that do not decode.
pub(super) fn read_chunk(
    pages: &mut dyn PageReader,
    job: &ChunkJob<'_>,
    layout: Layout,
    raw_pages: Vec<RawPage>,
) -> Result<ReadChunk, Stop> {
    let (max_def, max_rep) = (job.descr.max_def_level(), job.descr.max_rep_level());
    let mut dict: Option<Dictionary> = None;
    let mut data: Vec<DataPage> = Vec::new();
    let mut records = Records {
        keep: job.keep,
        next: 0,
        current_kept: true,
    };
    let mut next_raw = raw_pages.into_iter();
    let mut sample: Option<(Range<usize>, Bytes)> = None;
    while let Some(page) = pages.get_next_page()? {
        let raw = next_raw.next().ok_or(Stop::Declined(
            "the reader returned more pages than the headers hold",
        ))?;
        // The largest page up to 256 KiB: small pages compress alike at several levels.
        if let Page::DictionaryPage { buf, .. } | Page::DataPage { buf, .. } = &page
            && buf.len() <= SAMPLE_LIMIT
            && sample.as_ref().is_none_or(|(_, s)| buf.len() > s.len())
        {
            sample = Some((raw.range.start + raw.header_len..raw.range.end, buf.clone()));
        }
        let page = match page {
            Page::DictionaryPage {
                buf,
                num_values,
                encoding,
                is_sorted,
            } => {
                if dict.is_some() || !data.is_empty() {
                    return Err(Stop::Declined("a second dictionary page"));
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
            data_page => read_levels(data_page, max_rep, max_def)?,
        };
        let present = if max_def > 0 {
            page.defs.iter().filter(|&&d| d == max_def).count()
        } else {
            page.n
        };
        let values = match page.encoding {
            Encoding::PLAIN_DICTIONARY | Encoding::RLE_DICTIONARY => {
                let Some(d) = &dict else {
                    return Err(corrupt("a dictionary-encoded page without a dictionary").into());
                };
                let (indices, width) = decode_indices(&page.buf, present, d.entries.len())?;
                Values::Indices(indices, width)
            }
            Encoding::PLAIN => {
                let ranges = plain_ranges(layout, &page.buf, present)?;
                Values::Plain(page.buf.clone(), ranges)
            }
            _ => {
                return Err(Stop::Declined(
                    "a page's value encoding is not PLAIN or dictionary",
                ));
            }
        };
        let kept = records.kept_in(&page, present, (max_rep, max_def))?;
        if let Some(p) = filtered(raw, page, values, &kept, layout) {
            data.push(p);
        }
    }
    if next_raw.next().is_some() {
        return Err(Stop::Declined(
            "the reader returned fewer pages than the headers hold",
        ));
    }
    Ok(ReadChunk {
        dict,
        data,
        records: records.next,
        sample,
    })
}

/// A data page's levels, decoded, and its values' bytes.
fn read_levels(page: Page, max_rep: i16, max_def: i16) -> Result<ReadPage, Stop> {
    match page {
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
            let mut v1_levels = |max: i16, enc: Encoding| -> Result<Option<Vec<i16>>, Stop> {
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
            let reps = v1_levels(max_rep, rep_level_encoding)?
                .ok_or(Stop::Declined("its repetition levels are not RLE"))?;
            let defs = v1_levels(max_def, def_level_encoding)?
                .ok_or(Stop::Declined("its definition levels are not RLE"))?;
            Ok(ReadPage {
                buf: buf.slice(at..),
                n,
                encoding,
                reps,
                defs,
                v2: None,
            })
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
                return Err(corrupt("a page's levels run past it").into());
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
            Ok(ReadPage {
                buf: buf.slice(r + d..),
                n,
                encoding,
                reps,
                defs,
                v2: Some(is_compressed),
            })
        }
        Page::DictionaryPage { .. } => Err(corrupt("a dictionary page among data pages").into()),
    }
}

impl Records<'_> {
    /// The levels and values of `page` (holding `present` non-null values) that belong to
    /// kept records; records start at repetition level 0.
    fn kept_in(
        &mut self,
        page: &ReadPage,
        present: usize,
        (max_rep, max_def): (i16, i16),
    ) -> Result<KeptRanges, Stop> {
        let n = page.n;
        let too_many = || corrupt("the column holds more records than its row group says");
        if max_rep == 0 {
            // One level per record: the kept runs come from the record mask alone, and values
            // are counted only where a run is cut.
            let keep = self
                .keep
                .get(self.next..self.next + n)
                .ok_or_else(too_many)?;
            self.next += n;
            let levels = kept_runs(keep);
            let rows = levels.iter().map(ExactSizeIterator::len).sum();
            let values = if rows == n {
                std::iter::once(0..present).collect()
            } else if max_def == 0 {
                levels.clone()
            } else {
                let defs = &page.defs;
                let (mut level, mut value) = (0usize, 0usize);
                let mut value_at = |to: usize| {
                    value += defs[level..to].iter().filter(|&&d| d == max_def).count();
                    level = to;
                    value
                };
                levels
                    .iter()
                    .map(|r| {
                        let start = value_at(r.start);
                        start..value_at(r.end)
                    })
                    .collect()
            };
            self.current_kept = keep.last().copied().unwrap_or(self.current_kept);
            return Ok(KeptRanges {
                levels,
                values,
                rows,
            });
        }
        let mut kept = KeptRanges {
            levels: Vec::new(),
            values: Vec::new(),
            rows: 0,
        };
        let mut value = 0usize;
        let (mut run_start, mut run_value) = (0usize, 0usize);
        let mut run_kept = self.current_kept;
        for l in 0..n {
            if page.reps[l] == 0 {
                let k = *self.keep.get(self.next).ok_or_else(too_many)?;
                self.next += 1;
                kept.rows += usize::from(k);
                if k != run_kept {
                    if run_kept {
                        kept.levels.push(run_start..l);
                        kept.values.push(run_value..value);
                    }
                    (run_start, run_value, run_kept) = (l, value, k);
                }
                self.current_kept = k;
            }
            if max_def == 0 || page.defs[l] == max_def {
                value += 1;
            }
        }
        if run_kept {
            kept.levels.push(run_start..n);
            kept.values.push(run_value..value);
        }
        Ok(kept)
    }
}

/// `page` with only its `kept` levels and values; `None` when it keeps no level.
fn filtered(
    raw: RawPage,
    page: ReadPage,
    values: Values,
    kept: &KeptRanges,
    layout: Layout,
) -> Option<DataPage> {
    let levels: usize = kept.levels.iter().map(ExactSizeIterator::len).sum();
    if levels == 0 {
        return None;
    }
    let changed = levels != page.n;
    let pick = |v: Vec<i16>| -> Vec<i16> {
        if v.is_empty() || !changed {
            return v;
        }
        kept.levels
            .iter()
            .flat_map(|r| v[r.clone()].iter().copied())
            .collect()
    };
    let values = match values {
        values if !changed => values,
        Values::Indices(ix, w) => Values::Indices(
            kept.values
                .iter()
                .flat_map(|r| ix[r.clone()].iter().copied())
                .collect(),
            w,
        ),
        Values::Plain(buf, ranges) => {
            let mut out = Vec::new();
            let mut out_ranges = Vec::new();
            for r in kept.values.iter().filter(|r| !r.is_empty()) {
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
    };
    Some(DataPage {
        raw,
        v2: page.v2,
        encoding: page.encoding,
        reps: pick(page.reps),
        defs: pick(page.defs),
        levels,
        rows: kept.rows,
        values,
        changed,
    })
}
