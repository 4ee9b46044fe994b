//! The pieces [`super::pages`] filters a chunk with: PLAIN value layouts and the runs of
//! values kept, levels and dictionary indices (RLE / bit-packing hybrid), the dictionary's
//! values seen per page, page bounds and boundary order, and a data page encoded again.

use std::ops::Range;

use bytes::Bytes;
use parquet::basic::{BoundaryOrder, Encoding};
use parquet::column::page::{CompressedPage, Page};
use parquet::errors::{ParquetError, Result};

use super::codec::PageCodec;
use super::order::{Bounds, Order};
use super::rle;
use super::thrift::RawPage;

/// How a value is laid out in PLAIN encoding.
#[derive(Debug, Clone, Copy)]
pub(super) enum Layout {
    Fixed(usize),
    /// A 4-byte little-endian length, then the bytes.
    Var,
}

pub(super) fn corrupt(what: impl std::fmt::Display) -> ParquetError {
    ParquetError::General(what.to_string())
}

/// The byte ranges of the values of PLAIN-encoded `buf` (`count` values; for byte arrays
/// without their length prefix).
pub(super) fn plain_ranges(layout: Layout, buf: &[u8], count: usize) -> Result<Vec<Range<usize>>> {
    let mut out = Vec::with_capacity(count);
    match layout {
        Layout::Fixed(w) => {
            if buf.len() < count * w {
                return Err(corrupt("a page holds fewer values than its levels say"));
            }
            out.extend((0..count).map(|i| i * w..(i + 1) * w));
        }
        Layout::Var => {
            let mut at = 0usize;
            for _ in 0..count {
                let len = buf
                    .get(at..at + 4)
                    .map(|b| u32::from_le_bytes(b.try_into().unwrap_or_default()) as usize)
                    .ok_or_else(|| corrupt("a page holds fewer values than its levels say"))?;
                let end = (at + 4)
                    .checked_add(len)
                    .filter(|&e| e <= buf.len())
                    .ok_or_else(|| corrupt("a byte array runs past its page"))?;
                out.push(at + 4..end);
                at = end;
            }
        }
    }
    Ok(out)
}

/// The runs of `true` in `keep`, found by searching for the few `false` (removed records are
/// rare: most pages lose none).
pub(super) fn kept_runs(keep: &[bool]) -> Vec<Range<usize>> {
    let mut runs = Vec::new();
    let mut start = 0usize;
    while start < keep.len() {
        let Some(cut) = keep[start..].iter().position(|&k| !k).map(|o| start + o) else {
            runs.push(start..keep.len());
            break;
        };
        if cut > start {
            runs.push(start..cut);
        }
        start = keep[cut..]
            .iter()
            .position(|&k| k)
            .map_or(keep.len(), |o| cut + o);
    }
    runs
}

/// A value's whole PLAIN encoding (length prefix included) from its data range.
pub(super) fn plain_extent(layout: Layout, r: &Range<usize>) -> Range<usize> {
    match layout {
        Layout::Fixed(_) => r.clone(),
        Layout::Var => r.start - 4..r.end,
    }
}

/// The dictionary page of a chunk.
pub(super) struct Dictionary {
    pub(super) raw: RawPage,
    /// PLAIN-encoded values.
    pub(super) buf: Bytes,
    /// Each entry's value (data only).
    pub(super) entries: Vec<Range<usize>>,
    pub(super) encoding: Encoding,
    pub(super) is_sorted: bool,
}

/// The values of one data page.
pub(super) enum Values {
    /// Dictionary indices, with the page's bit width.
    Indices(Vec<u32>, u8),
    /// PLAIN-encoded values and each value's data range in it.
    Plain(Bytes, Vec<Range<usize>>),
}

/// A data page after filtering.
pub(super) struct DataPage {
    pub(super) raw: RawPage,
    /// `Some(is_compressed)` for a DataPageV2.
    pub(super) v2: Option<bool>,
    pub(super) encoding: Encoding,
    pub(super) reps: Vec<i16>,
    pub(super) defs: Vec<i16>,
    /// Levels kept (values and nulls).
    pub(super) levels: usize,
    /// Records that start in this page and are kept.
    pub(super) rows: usize,
    pub(super) values: Values,
    /// Some level was removed.
    pub(super) changed: bool,
}

pub(super) fn levels_bit_width(max: i16) -> u8 {
    (16 - (max as u16).leading_zeros()) as u8
}

pub(super) fn decode_levels(data: Bytes, max: i16, n: usize) -> Result<Vec<i16>> {
    let mut raw = vec![0u32; n];
    let got = rle::decode(&data, levels_bit_width(max), &mut raw).map_err(corrupt)?;
    if got != n || raw.iter().any(|&l| l > max as u32) {
        return Err(corrupt("a page's levels do not decode"));
    }
    Ok(raw.into_iter().map(|l| l as i16).collect())
}

pub(super) fn encode_rle(values: impl Iterator<Item = u32>, bit_width: u8) -> Vec<u8> {
    let values: Vec<u32> = values.collect();
    rle::encode(&values, bit_width)
}

/// Decodes `count` dictionary indices (a bit-width byte, then the RLE / bit-packed hybrid),
/// each checked against a dictionary of `len` values.
pub(super) fn decode_indices(buf: &Bytes, count: usize, len: usize) -> Result<(Vec<u32>, u8)> {
    if count == 0 {
        return Ok((Vec::new(), buf.first().copied().unwrap_or(0)));
    }
    let width = *buf
        .first()
        .ok_or_else(|| corrupt("a dictionary-encoded page without indices"))?;
    if width > 32 {
        return Err(corrupt("a dictionary index wider than 32 bits"));
    }
    let mut out = vec![0u32; count];
    if rle::decode(&buf[1..], width, &mut out).map_err(corrupt)? != count {
        return Err(corrupt("a page holds fewer indices than its levels say"));
    }
    if out.iter().any(|&i| i as usize >= len) {
        return Err(corrupt("a dictionary index past the dictionary"));
    }
    Ok((out, width))
}

/// Which dictionary values a page already compared, by page (a stamp per value, so nothing is
/// cleared between pages), and which values are NaN.
pub(super) struct SeenValues {
    pub(super) stamp: Vec<u32>,
    pub(super) page: u32,
    pub(super) nan: Vec<bool>,
}

impl SeenValues {
    pub(super) fn new(order: Order, d: &Dictionary) -> Self {
        let nan = if order.is_float() {
            d.entries
                .iter()
                .map(|r| order.is_nan(&d.buf[r.clone()]))
                .collect()
        } else {
            Vec::new()
        };
        SeenValues {
            stamp: vec![0; d.entries.len()],
            page: 0,
            nan,
        }
    }
}

/// Min, max and NaN count of the dictionary values `ix` refers to: each value is compared once
/// per page however many rows use it (sorting the dictionary to rank it cost more than the
/// rest of the filter on high-cardinality columns).
pub(super) fn dictionary_page_bounds(
    order: Order,
    d: &Dictionary,
    ix: &[u32],
    b: &mut Bounds,
    seen: &mut SeenValues,
) {
    let value = |i: u32| &d.buf[d.entries[i as usize].clone()];
    seen.page += 1;
    let page = seen.page;
    let (mut lo, mut hi) = (None::<u32>, None::<u32>);
    b.values += ix.len() as u64;
    for &i in ix {
        let first = std::mem::replace(&mut seen.stamp[i as usize], page) != page;
        if seen.nan.get(i as usize).copied().unwrap_or(false) {
            b.nans += 1;
            if first {
                b.add_nan_bound(order, value(i));
            }
            continue;
        }
        if !first {
            continue;
        }
        match (lo, hi) {
            (Some(l), Some(h)) => {
                let v = value(i);
                if order.cmp(v, value(l)) == std::cmp::Ordering::Less {
                    lo = Some(i);
                } else if order.cmp(v, value(h)) == std::cmp::Ordering::Greater {
                    hi = Some(i);
                }
            }
            _ => (lo, hi) = (Some(i), Some(i)),
        }
    }
    if let (Some(l), Some(h)) = (lo, hi) {
        b.min_max = Some((value(l).to_vec(), value(h).to_vec()));
    }
}

/// ASCENDING or DESCENDING when the pages' bounds are in that order, else UNORDERED.
pub(super) fn boundary_order(order: Order, pages: &[Bounds]) -> BoundaryOrder {
    let bounds: Vec<_> = pages.iter().filter_map(|b| b.min_max.as_ref()).collect();
    let all = |want: std::cmp::Ordering| {
        bounds.windows(2).all(|w| {
            order.cmp(&w[0].0, &w[1].0) != want.reverse()
                && order.cmp(&w[0].1, &w[1].1) != want.reverse()
        })
    };
    if all(std::cmp::Ordering::Less) {
        BoundaryOrder::ASCENDING
    } else if all(std::cmp::Ordering::Greater) {
        BoundaryOrder::DESCENDING
    } else {
        BoundaryOrder::UNORDERED
    }
}

pub(super) fn compress(codec: &mut PageCodec, body: &[u8]) -> Result<Vec<u8>> {
    codec
        .compress(body)
        .map_err(|e| ParquetError::General(format!("compressing a page: {e}")))
}

/// Encodes a filtered data page in the page format and value encoding it had.
pub(super) fn encode_page(
    p: &DataPage,
    codec: &mut PageCodec,
    remap: Option<&[u32]>,
    (max_rep, max_def): (i16, i16),
) -> Result<CompressedPage> {
    let rep = (max_rep > 0)
        .then(|| encode_rle(p.reps.iter().map(|&l| l as u32), levels_bit_width(max_rep)));
    let def = (max_def > 0)
        .then(|| encode_rle(p.defs.iter().map(|&l| l as u32), levels_bit_width(max_def)));
    let values: Vec<u8> = match &p.values {
        Values::Indices(ix, width) => {
            let mut v = vec![*width];
            let map = |i: u32| remap.map_or(i, |m| m[i as usize]);
            v.extend(encode_rle(ix.iter().map(|&i| map(i)), *width));
            v
        }
        // Unchanged or gathered: the values start at byte 0 of `buf`.
        Values::Plain(buf, ranges) => ranges.last().map_or(Vec::new(), |r| buf[..r.end].to_vec()),
    };
    let nulls = p.levels
        - match &p.values {
            Values::Indices(ix, _) => ix.len(),
            Values::Plain(_, r) => r.len(),
        };
    match p.v2 {
        None => {
            let mut body = Vec::with_capacity(values.len() + 16);
            for levels in [&rep, &def].into_iter().flatten() {
                body.extend_from_slice(&(levels.len() as u32).to_le_bytes());
                body.extend_from_slice(levels);
            }
            body.extend_from_slice(&values);
            let buf = compress(codec, &body)?;
            let page = Page::DataPage {
                buf: Bytes::from(buf),
                num_values: p.levels as u32,
                encoding: p.encoding,
                def_level_encoding: Encoding::RLE,
                rep_level_encoding: Encoding::RLE,
                statistics: None,
            };
            Ok(CompressedPage::new(page, body.len()))
        }
        Some(is_compressed) => {
            let rep = rep.unwrap_or_default();
            let def = def.unwrap_or_default();
            let body = if is_compressed {
                compress(codec, &values)?
            } else {
                values.clone()
            };
            let mut buf = Vec::with_capacity(rep.len() + def.len() + body.len());
            buf.extend_from_slice(&rep);
            buf.extend_from_slice(&def);
            buf.extend_from_slice(&body);
            let page = Page::DataPageV2 {
                buf: Bytes::from(buf),
                num_values: p.levels as u32,
                encoding: p.encoding,
                num_nulls: nulls as u32,
                num_rows: p.rows as u32,
                def_levels_byte_len: def.len() as u32,
                rep_levels_byte_len: rep.len() as u32,
                is_compressed,
                statistics: None,
            };
            Ok(CompressedPage::new(
                page,
                rep.len() + def.len() + values.len(),
            ))
        }
    }
}
