//! Iceberg's single-value binary serialization of column bounds (`lower_bounds`,
//! `upper_bounds` of a data file), for the types Lethe reads and writes, and the pruning of
//! files by the bounds of the subject column.
//!
//! Source: Iceberg spec, Appendix D "Single-value serialization": `int` / `date` 4 bytes
//! little-endian, `long` / `time` / `timestamp` / `timestamptz` 8 bytes little-endian,
//! `float` / `double` IEEE 754 little-endian, `string` UTF-8 bytes, `binary` the bytes,
//! `boolean` one byte. Bounds of strings and binaries may be truncated by the writer
//! (`write.metadata.metrics.default`, `truncate(16)`), but stay bounds: a truncated lower
//! bound is a prefix (≤ every value), a truncated upper bound is incremented (≥ every value).
//! Strings order by their UTF-8 bytes, unsigned.

use std::cmp::Ordering;

/// A subject id as the column's type orders it, or `None` when Lethe cannot compare it with
/// this column's bounds (other types, or an id that is not a number of a numeric column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Key {
    /// `string` (and `binary`): compared byte-wise, unsigned.
    Bytes(Vec<u8>),
    /// `int` / `long`.
    Int(i64),
}

impl Key {
    /// The subject id `subject` as a value of Iceberg type `kind`.
    pub fn of(kind: &str, subject: &str) -> Option<Self> {
        match kind {
            "string" => Some(Key::Bytes(subject.as_bytes().to_vec())),
            "int" | "long" => subject.trim().parse().ok().map(Key::Int),
            _ => None,
        }
    }

    /// This key against a serialized bound of type `kind` (`None`: the bound cannot be
    /// decoded, so it prunes nothing).
    fn cmp_bound(&self, kind: &str, bound: &[u8]) -> Option<Ordering> {
        match (self, kind) {
            (Key::Bytes(k), "string") => Some(k.as_slice().cmp(bound)),
            (Key::Int(k), "int") => {
                let b: [u8; 4] = bound.try_into().ok()?;
                Some(k.cmp(&i64::from(i32::from_le_bytes(b))))
            }
            (Key::Int(k), "long") => {
                let b: [u8; 8] = bound.try_into().ok()?;
                Some(k.cmp(&i64::from_le_bytes(b)))
            }
            _ => None,
        }
    }

    /// False only when the bounds prove that no value of the column equals this key.
    pub fn may_be_within(&self, kind: &str, lower: Option<&[u8]>, upper: Option<&[u8]>) -> bool {
        let below = lower.and_then(|b| self.cmp_bound(kind, b)) == Some(Ordering::Less);
        let above = upper.and_then(|b| self.cmp_bound(kind, b)) == Some(Ordering::Greater);
        !(below || above)
    }
}

/// One bound read from a Parquet footer, serialized for Iceberg type `kind`; `None` when Lethe
/// does not write bounds for that type (decimals, uuids, fixed, nested) or the value is NaN.
pub(crate) fn serialize(
    kind: &str,
    stat: &parquet::file::statistics::Statistics,
    min: bool,
) -> Option<Vec<u8>> {
    use parquet::file::statistics::Statistics as S;
    macro_rules! pick {
        ($s:expr) => {
            if min { $s.min_opt() } else { $s.max_opt() }
        };
    }
    match (kind, stat) {
        ("boolean", S::Boolean(s)) => Some(vec![u8::from(*pick!(s)?)]),
        ("int" | "date", S::Int32(s)) => Some(pick!(s)?.to_le_bytes().to_vec()),
        ("long" | "time" | "timestamp" | "timestamptz", S::Int64(s)) => {
            Some(pick!(s)?.to_le_bytes().to_vec())
        }
        ("long", S::Int32(s)) => Some(i64::from(*pick!(s)?).to_le_bytes().to_vec()),
        ("float", S::Float(s)) => {
            let v = *pick!(s)?;
            (!v.is_nan()).then(|| v.to_le_bytes().to_vec())
        }
        ("double", S::Double(s)) => {
            let v = *pick!(s)?;
            (!v.is_nan()).then(|| v.to_le_bytes().to_vec())
        }
        ("string" | "binary", S::ByteArray(s)) if !stat.is_min_max_deprecated() => {
            Some(pick!(s)?.data().to_vec())
        }
        _ => None,
    }
}

/// The lower (`min`) or upper bound of two serialized bounds of type `kind`.
pub(crate) fn wider(kind: &str, a: Vec<u8>, b: Vec<u8>, min: bool) -> Vec<u8> {
    let ord = match kind {
        "int" | "date" => le_i64(&a).cmp(&le_i64(&b)),
        "long" | "time" | "timestamp" | "timestamptz" => le_i64(&a).cmp(&le_i64(&b)),
        "float" => f32::from_le_bytes(a[..4].try_into().unwrap_or_default())
            .total_cmp(&f32::from_le_bytes(b[..4].try_into().unwrap_or_default())),
        "double" => f64::from_le_bytes(a[..8].try_into().unwrap_or_default())
            .total_cmp(&f64::from_le_bytes(b[..8].try_into().unwrap_or_default())),
        _ => a.cmp(&b),
    };
    match (min, ord) {
        (true, Ordering::Greater) | (false, Ordering::Less) => b,
        _ => a,
    }
}

/// A little-endian signed integer of 1, 4 or 8 bytes.
fn le_i64(b: &[u8]) -> i64 {
    match b.len() {
        4 => i64::from(i32::from_le_bytes(b.try_into().unwrap_or_default())),
        8 => i64::from_le_bytes(b.try_into().unwrap_or_default()),
        1 => i64::from(b[0]),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_prune_only_what_they_prove() {
        let k = Key::of("string", "u-07").unwrap();
        assert!(!k.may_be_within("string", Some(b"u-10"), Some(b"u-19")));
        assert!(k.may_be_within("string", Some(b"u-0"), Some(b"u-1")));
        // A truncated lower bound is a prefix of the values: still a bound.
        assert!(k.may_be_within("string", Some(b"u"), None));
        let n = Key::of("long", "42").unwrap();
        assert!(!n.may_be_within("long", Some(&43i64.to_le_bytes()), None));
        assert!(n.may_be_within("long", Some(&[1, 2]), None));
        assert_eq!(Key::of("long", "x"), None);
        assert_eq!(
            wider(
                "int",
                5i32.to_le_bytes().to_vec(),
                (-1i32).to_le_bytes().to_vec(),
                true
            ),
            (-1i32).to_le_bytes().to_vec()
        );
    }
}
