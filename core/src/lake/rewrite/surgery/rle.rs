//! The RLE / bit-packing hybrid of parquet-format (`Encodings.md`, "Run Length Encoding /
//! Bit-Packing Hybrid (RLE = 3)"), which carries a data page's repetition and definition levels
//! and its dictionary indices:
//!
//! ```text
//! encoded-data := run*
//! run          := bit-packed-run | rle-run
//! bit-packed   := varint(groups << 1 | 1), then groups × 8 values of `width` bits, LSB first
//! rle-run      := varint(count << 1), then the value in ceil(width / 8) little-endian bytes
//! ```
//!
//! Neither the length prefix of V1 levels nor the bit-width byte of dictionary indices is part of
//! it: callers add and strip those.

/// Decodes `out.len()` values of `width` bits (at most 32) from `data`. Returns how many were
/// decoded: fewer when `data` ends first. A bit-packed run's padding past the last value is
/// ignored, as the format says.
///
/// # Errors
/// A width over 32, a truncated run header, or a run that extends past `data`.
pub(crate) fn decode(data: &[u8], width: u8, out: &mut [u32]) -> Result<usize, &'static str> {
    if width > 32 {
        return Err("an RLE bit width over 32");
    }
    let width = usize::from(width);
    let value_bytes = width.div_ceil(8);
    let (mut at, mut filled) = (0usize, 0usize);
    while filled < out.len() && at < data.len() {
        let header = varint(data, &mut at)?;
        if header & 1 == 1 {
            let groups = usize::try_from(header >> 1).map_err(|_| "an RLE run too long")?;
            let count = groups.checked_mul(8).ok_or("an RLE run too long")?;
            let bytes = groups.checked_mul(width).ok_or("an RLE run too long")?;
            let run = data
                .get(at..at + bytes)
                .ok_or("a bit-packed run past its page")?;
            at += bytes;
            let take = count.min(out.len() - filled);
            unpack(run, width, &mut out[filled..filled + take]);
            filled += take;
        } else {
            let count = usize::try_from(header >> 1).map_err(|_| "an RLE run too long")?;
            let raw = data
                .get(at..at + value_bytes)
                .ok_or("an RLE run's value past its page")?;
            at += value_bytes;
            let mut le = [0u8; 4];
            le[..value_bytes].copy_from_slice(raw);
            let value = u32::from_le_bytes(le);
            let take = count.min(out.len() - filled);
            out[filled..filled + take].fill(value);
            filled += take;
        }
    }
    Ok(filled)
}

/// Encodes `values` (each below `2^width`, `width` at most 32): repeats of 8 or more as RLE
/// runs, the rest bit-packed in groups of 8 (the last group padded with zeros).
pub(crate) fn encode(values: &[u32], width: u8) -> Vec<u8> {
    let width = usize::from(width.min(32));
    let mut out = Vec::with_capacity(values.len() * width / 8 + 16);
    let run_at = |i: usize| {
        let v = values[i];
        values[i..].iter().take_while(|&&x| x == v).count()
    };
    let mut i = 0usize;
    while i < values.len() {
        let run = run_at(i);
        if run >= 8 {
            put_varint(&mut out, (run as u64) << 1);
            out.extend_from_slice(&values[i].to_le_bytes()[..width.div_ceil(8)]);
            i += run;
            continue;
        }
        // Bit-pack groups of 8 until a run of 8 or more starts at a group boundary.
        let start = i;
        let mut groups = 0usize;
        while i < values.len() {
            groups += 1;
            i += 8;
            if i >= values.len() || run_at(i) >= 8 {
                break;
            }
        }
        put_varint(&mut out, ((groups as u64) << 1) | 1);
        pack(
            &values[start..i.min(values.len())],
            groups * 8,
            width,
            &mut out,
        );
        i = i.min(values.len());
    }
    out
}

fn varint(data: &[u8], at: &mut usize) -> Result<u64, &'static str> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *data.get(*at).ok_or("a truncated RLE run header")?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("an RLE run header over 64 bits")
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads `out.len()` values of `width` bits, least significant bit first: one unaligned 64-bit
/// load per value (a value of up to 32 bits at a bit offset of up to 7 fits in it).
fn unpack(data: &[u8], width: usize, out: &mut [u32]) {
    if width == 0 {
        out.fill(0);
        return;
    }
    let mask = if width == 32 {
        u64::from(u32::MAX)
    } else {
        (1u64 << width) - 1
    };
    for (k, v) in out.iter_mut().enumerate() {
        let bit = k * width;
        let at = bit / 8;
        let word = match data.get(at..at + 8) {
            Some(b) => u64::from_le_bytes(b.try_into().expect("8 bytes")),
            None => {
                let mut le = [0u8; 8];
                let tail = data.get(at..).unwrap_or_default();
                le[..tail.len()].copy_from_slice(tail);
                u64::from_le_bytes(le)
            }
        };
        *v = ((word >> (bit % 8)) & mask) as u32;
    }
}

/// Writes `values` padded with zeros to `count` (a multiple of 8), `width` bits each, least
/// significant first, 32 bits at a time.
fn pack(values: &[u32], count: usize, width: usize, out: &mut Vec<u8>) {
    if width == 0 {
        return;
    }
    let (mut acc, mut bits) = (0u64, 0usize);
    for i in 0..count {
        acc |= u64::from(values.get(i).copied().unwrap_or(0)) << bits;
        bits += width;
        if bits >= 32 {
            out.extend_from_slice(&(acc as u32).to_le_bytes());
            acc >>= 32;
            bits -= 32;
        }
    }
    while bits > 0 {
        out.push(acc as u8);
        acc >>= 8;
        bits = bits.saturating_sub(8);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(values: &[u32], width: u8) {
        let encoded = encode(values, width);
        let mut out = vec![u32::MAX; values.len()];
        assert_eq!(decode(&encoded, width, &mut out), Ok(values.len()));
        assert_eq!(out, values, "width {width}");
    }

    #[test]
    fn values_round_trip_at_every_width() {
        for width in 0..=32u8 {
            let max = if width == 32 {
                u32::MAX
            } else {
                (1u32 << width) - 1
            };
            let mut values: Vec<u32> = (0..1000u32)
                .map(|i| {
                    if max == 0 {
                        0
                    } else {
                        i.wrapping_mul(2_654_435_761) % max.max(1)
                    }
                })
                .collect();
            values.extend(std::iter::repeat_n(max, 20));
            values.extend([1 & max, 0, max]);
            round_trip(&values, width);
            round_trip(&values[..5], width);
            round_trip(&[], width);
        }
    }

    #[test]
    fn the_format_examples_decode() {
        // An RLE run of 5 × 3 (width 2), then a bit-packed group 0..7 (width 3): the bit
        // layout of Encodings.md's example.
        let data = [0x0a, 0x03, 0x03, 0x88, 0xc6, 0xfa];
        let mut out = [0u32; 13];
        assert_eq!(decode(&data[..2], 2, &mut out[..5]), Ok(5));
        assert_eq!(&out[..5], &[3, 3, 3, 3, 3]);
        assert_eq!(decode(&data[2..], 3, &mut out[..8]), Ok(8));
        assert_eq!(&out[..8], &[0, 1, 2, 3, 4, 5, 6, 7]);
    }

    #[test]
    fn long_repeats_become_rle_runs() {
        let values = vec![1u32; 10_000];
        let encoded = encode(&values, 1);
        assert!(encoded.len() <= 4, "{encoded:?}");
        round_trip(&values, 1);
    }

    #[test]
    fn truncated_or_wide_input_is_refused() {
        let mut out = [0u32; 8];
        assert!(
            decode(&[0x03], 8, &mut out).is_err(),
            "a bit-packed run without its bytes"
        );
        assert!(decode(&[0x80], 8, &mut out).is_err(), "a header cut short");
        assert!(decode(&[0x02], 33, &mut out).is_err());
        assert_eq!(decode(&[], 4, &mut out), Ok(0));
    }
}
