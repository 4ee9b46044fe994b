//! How the values of a column compare, and the statistics of the values a filtered column
//! chunk keeps: min and max by the column's sort order (parquet-format `LogicalTypes.md`,
//! "Sort Order"; `ColumnOrder` in `parquet.thrift`). FLOAT and DOUBLE columns follow
//! `IEEE_754_TOTAL_ORDER`, the column order the parquet crate declares for them in every file
//! it writes: NaN is counted (`nan_count`) and left out of min and max unless every value is
//! NaN, and `-0.0` sorts before `+0.0`.

use std::cmp::Ordering;

use parquet::basic::{SortOrder, Type as PhysicalType};
use parquet::data_type::{ByteArray, FixedLenByteArray};
use parquet::file::statistics::{Statistics, ValueStatistics};
use parquet::schema::types::ColumnDescriptor;

/// How two plain-encoded values (little-endian numbers, or the bytes of a byte array) compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Order {
    /// INT32, signed.
    I32,
    /// INT32 with an unsigned logical type.
    U32,
    /// INT64, signed.
    I64,
    /// INT64 with an unsigned logical type.
    U64,
    /// FLOAT, IEEE 754 total order (`f32::total_cmp`).
    F32,
    /// DOUBLE, IEEE 754 total order (`f64::total_cmp`).
    F64,
    /// BYTE_ARRAY or FIXED_LEN_BYTE_ARRAY compared as unsigned bytes.
    Bytes,
}

impl Order {
    /// The order of `descr`'s values, `None` when its sort order is one the surgery leaves to
    /// the parquet crate's writer (signed byte arrays such as decimals, INT96, BOOLEAN, FLOAT16,
    /// undefined orders).
    pub fn of(descr: &ColumnDescriptor) -> Option<Order> {
        use PhysicalType as P;
        Some(match (descr.physical_type(), descr.sort_order()) {
            (P::INT32, SortOrder::SIGNED) => Order::I32,
            (P::INT32, SortOrder::UNSIGNED) => Order::U32,
            (P::INT64, SortOrder::SIGNED) => Order::I64,
            (P::INT64, SortOrder::UNSIGNED) => Order::U64,
            (P::FLOAT, SortOrder::SIGNED | SortOrder::TOTAL_ORDER) => Order::F32,
            (P::DOUBLE, SortOrder::SIGNED | SortOrder::TOTAL_ORDER) => Order::F64,
            (P::BYTE_ARRAY | P::FIXED_LEN_BYTE_ARRAY, SortOrder::UNSIGNED) => Order::Bytes,
            _ => return None,
        })
    }

    /// True for a NaN of a floating-point column.
    pub fn is_nan(self, v: &[u8]) -> bool {
        match self {
            Order::F32 => v.try_into().is_ok_and(|b| f32::from_le_bytes(b).is_nan()),
            Order::F64 => v.try_into().is_ok_and(|b| f64::from_le_bytes(b).is_nan()),
            _ => false,
        }
    }

    /// True for floating-point columns (their page index carries NaN counts).
    pub fn is_float(self) -> bool {
        matches!(self, Order::F32 | Order::F64)
    }

    /// Compares two values of this order (a total order: NaNs too compare, by their bits, as
    /// IEEE 754 `totalOrder` says). Values of the wrong width compare as bytes; the caller
    /// checks widths when it reads them.
    pub fn cmp(self, a: &[u8], b: &[u8]) -> Ordering {
        fn num<const N: usize, T: Ord>(a: &[u8], b: &[u8], f: fn([u8; N]) -> T) -> Ordering {
            match (<[u8; N]>::try_from(a), <[u8; N]>::try_from(b)) {
                (Ok(a), Ok(b)) => f(a).cmp(&f(b)),
                _ => a.cmp(b),
            }
        }
        fn float<const N: usize, T>(
            a: &[u8],
            b: &[u8],
            f: fn([u8; N]) -> T,
            total: fn(&T, &T) -> Ordering,
        ) -> Ordering {
            match (<[u8; N]>::try_from(a), <[u8; N]>::try_from(b)) {
                (Ok(a), Ok(b)) => total(&f(a), &f(b)),
                _ => a.cmp(b),
            }
        }
        match self {
            Order::I32 => num(a, b, i32::from_le_bytes),
            Order::U32 => num(a, b, u32::from_le_bytes),
            Order::I64 => num(a, b, i64::from_le_bytes),
            Order::U64 => num(a, b, u64::from_le_bytes),
            Order::F32 => float(a, b, f32::from_le_bytes, f32::total_cmp),
            Order::F64 => float(a, b, f64::from_le_bytes, f64::total_cmp),
            Order::Bytes => a.cmp(b),
        }
    }
}

/// Min, max, nulls and NaNs of some values (a page's, or a chunk's).
#[derive(Debug, Clone, Default)]
pub(crate) struct Bounds {
    /// Smallest and largest non-NaN value, plain-encoded.
    pub min_max: Option<(Vec<u8>, Vec<u8>)>,
    /// Smallest and largest NaN (by total order), the bounds when every value is NaN.
    pub nan_min_max: Option<(Vec<u8>, Vec<u8>)>,
    /// Levels without a value.
    pub nulls: u64,
    /// NaN values.
    pub nans: u64,
    /// Values (NaN included).
    pub values: u64,
}

impl Bounds {
    /// Takes `v` into account.
    pub fn add(&mut self, order: Order, v: &[u8]) {
        self.values += 1;
        if order.is_nan(v) {
            self.nans += 1;
            widen(&mut self.nan_min_max, order, v, v);
            return;
        }
        // One comparison for most values; the bounds' buffers are reused.
        match &mut self.min_max {
            None => self.min_max = Some((v.to_vec(), v.to_vec())),
            Some((min, max)) => {
                if order.cmp(v, min) == Ordering::Less {
                    min.clear();
                    min.extend_from_slice(v);
                } else if order.cmp(v, max) == Ordering::Greater {
                    max.clear();
                    max.extend_from_slice(v);
                }
            }
        }
    }

    /// Takes into account the fixed-width values packed one after the other in `packed`
    /// (`width` bytes each): one typed pass for numbers, instead of a comparison of slices
    /// per value.
    pub fn add_packed(&mut self, order: Order, width: usize, packed: &[u8]) {
        fn ints<const N: usize, T: Ord + Copy>(
            b: &mut Bounds,
            order: Order,
            packed: &[u8],
            read: fn([u8; N]) -> T,
            write: fn(T) -> [u8; N],
        ) {
            let mut values = packed
                .chunks_exact(N)
                .map(|c| read(c.try_into().expect("chunks of N bytes")));
            let Some(first) = values.next() else {
                return;
            };
            let (min, max) = values.fold((first, first), |(lo, hi), v| (lo.min(v), hi.max(v)));
            b.values += (packed.len() / N) as u64;
            widen(&mut b.min_max, order, &write(min), &write(max));
        }
        match (order, width) {
            (Order::I32, 4) => ints(self, order, packed, i32::from_le_bytes, i32::to_le_bytes),
            (Order::U32, 4) => ints(self, order, packed, u32::from_le_bytes, u32::to_le_bytes),
            (Order::I64, 8) => ints(self, order, packed, i64::from_le_bytes, i64::to_le_bytes),
            (Order::U64, 8) => ints(self, order, packed, u64::from_le_bytes, u64::to_le_bytes),
            // Floats by their total-order keys (as `f32::total_cmp` maps them), NaN apart.
            (Order::F32, 4) => {
                let key = |bits: u32| (bits ^ ((((bits as i32) >> 31) as u32) >> 1)) as i32;
                let mut bounds: Option<(i32, i32)> = None;
                for c in packed.chunks_exact(4) {
                    let bits = u32::from_le_bytes(c.try_into().expect("4 bytes"));
                    if f32::from_bits(bits).is_nan() {
                        self.nans += 1;
                        self.add_nan_bound(order, c);
                        continue;
                    }
                    let k = key(bits);
                    bounds = Some(bounds.map_or((k, k), |(lo, hi)| (lo.min(k), hi.max(k))));
                }
                self.values += (packed.len() / 4) as u64;
                if let Some((lo, hi)) = bounds {
                    let back = |k: i32| key(k as u32).to_le_bytes();
                    widen(&mut self.min_max, order, &back(lo), &back(hi));
                }
            }
            (Order::F64, 8) => {
                let key = |bits: u64| (bits ^ ((((bits as i64) >> 63) as u64) >> 1)) as i64;
                let mut bounds: Option<(i64, i64)> = None;
                for c in packed.chunks_exact(8) {
                    let bits = u64::from_le_bytes(c.try_into().expect("8 bytes"));
                    if f64::from_bits(bits).is_nan() {
                        self.nans += 1;
                        self.add_nan_bound(order, c);
                        continue;
                    }
                    let k = key(bits);
                    bounds = Some(bounds.map_or((k, k), |(lo, hi)| (lo.min(k), hi.max(k))));
                }
                self.values += (packed.len() / 8) as u64;
                if let Some((lo, hi)) = bounds {
                    let back = |k: i64| key(k as u64).to_le_bytes();
                    widen(&mut self.min_max, order, &back(lo), &back(hi));
                }
            }
            _ => {
                for v in packed.chunks_exact(width.max(1)) {
                    self.add(order, v);
                }
            }
        }
    }

    /// Takes NaN `v` into account (its count is the caller's).
    pub fn add_nan_bound(&mut self, order: Order, v: &[u8]) {
        widen(&mut self.nan_min_max, order, v, v);
    }

    /// Takes the bounds `other` into account.
    pub fn merge(&mut self, order: Order, other: &Bounds) {
        self.nulls += other.nulls;
        self.nans += other.nans;
        self.values += other.values;
        if let Some((min, max)) = &other.min_max {
            widen(&mut self.min_max, order, min, max);
        }
        if let Some((min, max)) = &other.nan_min_max {
            widen(&mut self.nan_min_max, order, min, max);
        }
    }

    /// Min and max as written to a footer or page index: those of the non-NaN values, or,
    /// when every value is NaN, those of the NaNs (as the parquet crate writes them).
    pub fn written_min_max(&self) -> Option<(Vec<u8>, Vec<u8>)> {
        self.min_max.clone().or_else(|| self.nan_min_max.clone())
    }

    /// Chunk statistics of a column of physical type `physical`.
    pub fn statistics(&self, physical: PhysicalType) -> Statistics {
        let mm = self.written_min_max();
        let (min, max) = match &mm {
            Some((a, b)) => (Some(a.as_slice()), Some(b.as_slice())),
            None => (None, None),
        };
        let nulls = Some(self.nulls);
        fn arr<const N: usize>(v: Option<&[u8]>) -> Option<[u8; N]> {
            v.and_then(|v| v.try_into().ok())
        }
        match physical {
            PhysicalType::INT32 => Statistics::int32(
                arr(min).map(i32::from_le_bytes),
                arr(max).map(i32::from_le_bytes),
                None,
                nulls,
                false,
            ),
            PhysicalType::INT64 => Statistics::int64(
                arr(min).map(i64::from_le_bytes),
                arr(max).map(i64::from_le_bytes),
                None,
                nulls,
                false,
            ),
            // Float statistics always carry their NaN count, as the parquet crate's do.
            PhysicalType::FLOAT => Statistics::Float(
                ValueStatistics::new(
                    arr(min).map(f32::from_le_bytes),
                    arr(max).map(f32::from_le_bytes),
                    None,
                    nulls,
                    false,
                )
                .with_nan_count(Some(self.nans)),
            ),
            PhysicalType::DOUBLE => Statistics::Double(
                ValueStatistics::new(
                    arr(min).map(f64::from_le_bytes),
                    arr(max).map(f64::from_le_bytes),
                    None,
                    nulls,
                    false,
                )
                .with_nan_count(Some(self.nans)),
            ),
            PhysicalType::FIXED_LEN_BYTE_ARRAY => Statistics::fixed_len_byte_array(
                min.map(|v| FixedLenByteArray::from(ByteArray::from(v.to_vec()))),
                max.map(|v| FixedLenByteArray::from(ByteArray::from(v.to_vec()))),
                None,
                nulls,
                false,
            ),
            _ => Statistics::byte_array(
                min.map(|v| ByteArray::from(v.to_vec())),
                max.map(|v| ByteArray::from(v.to_vec())),
                None,
                nulls,
                false,
            ),
        }
    }
}

/// Widens `bounds` to take in `min` and `max`.
fn widen(bounds: &mut Option<(Vec<u8>, Vec<u8>)>, order: Order, min: &[u8], max: &[u8]) {
    match bounds {
        None => *bounds = Some((min.to_vec(), max.to_vec())),
        Some((lo, hi)) => {
            if order.cmp(min, lo) == Ordering::Less {
                *lo = min.to_vec();
            }
            if order.cmp(max, hi) == Ordering::Greater {
                *hi = max.to_vec();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_compare_by_value_and_bytes_unsigned() {
        let le = |v: i32| v.to_le_bytes().to_vec();
        assert_eq!(Order::I32.cmp(&le(-1), &le(1)), Ordering::Less);
        assert_eq!(Order::U32.cmp(&le(-1), &le(1)), Ordering::Greater);
        assert_eq!(Order::Bytes.cmp(b"\xff", b"a"), Ordering::Greater);
        let f = |v: f64| v.to_le_bytes().to_vec();
        assert_eq!(Order::F64.cmp(&f(-2.5), &f(1.0)), Ordering::Less);
    }

    #[test]
    fn nan_is_counted_not_bounded_and_zeros_follow_the_total_order() {
        let f = |v: f32| v.to_le_bytes().to_vec();
        let mut b = Bounds::default();
        for v in [0.0f32, f32::NAN, 3.5, -0.0] {
            b.add(Order::F32, &f(v));
        }
        assert_eq!((b.nans, b.values), (1, 4));
        let (min, max) = b.written_min_max().unwrap();
        let min = f32::from_le_bytes(min.try_into().unwrap());
        assert!(
            min == 0.0 && min.is_sign_negative(),
            "-0.0 sorts before +0.0"
        );
        assert_eq!(f32::from_le_bytes(max.try_into().unwrap()), 3.5);
        let mut zero = Bounds::default();
        zero.add(Order::F32, &f(0.0));
        let (min, _) = zero.written_min_max().unwrap();
        assert!(f32::from_le_bytes(min.try_into().unwrap()).is_sign_positive());
        let Statistics::Float(stats) = b.statistics(PhysicalType::FLOAT) else {
            panic!("float statistics");
        };
        assert_eq!(stats.nan_count_opt(), Some(1));
    }

    #[test]
    fn only_nans_are_bounded_by_the_nans_themselves() {
        let d = |v: f64| v.to_le_bytes().to_vec();
        let negative_nan = f64::from_bits(f64::NAN.to_bits() | (1 << 63));
        let mut b = Bounds::default();
        b.add(Order::F64, &d(f64::NAN));
        b.add(Order::F64, &d(negative_nan));
        let (min, max) = b.written_min_max().unwrap();
        assert_eq!(min, d(negative_nan));
        assert_eq!(max, d(f64::NAN));
        let mut other = Bounds::default();
        other.add(Order::F64, &d(1.5));
        b.merge(Order::F64, &other);
        assert_eq!(b.written_min_max().unwrap(), (d(1.5), d(1.5)));
        assert_eq!((b.nans, b.values), (2, 3));
    }

    #[test]
    fn packed_values_are_bounded_as_one_by_one() {
        let mut cases: Vec<(Order, usize, Vec<u8>)> = Vec::new();
        let ints: Vec<i64> = vec![5, -3, i64::MAX, 0, -7, 42];
        cases.push((
            Order::I64,
            8,
            ints.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ));
        cases.push((
            Order::U64,
            8,
            ints.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ));
        let i32s: Vec<i32> = vec![9, -1, 3];
        cases.push((
            Order::I32,
            4,
            i32s.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ));
        cases.push((
            Order::U32,
            4,
            i32s.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ));
        let negative_nan = f64::from_bits(f64::NAN.to_bits() | (1 << 63));
        let f64s = [
            2.5,
            f64::NAN,
            -0.0,
            0.0,
            f64::NEG_INFINITY,
            negative_nan,
            1e300,
        ];
        cases.push((
            Order::F64,
            8,
            f64s.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ));
        let only_nans = [f64::NAN, negative_nan];
        cases.push((
            Order::F64,
            8,
            only_nans.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ));
        let f32s = [-1.5f32, f32::NAN, 0.0, -0.0, f32::INFINITY];
        cases.push((
            Order::F32,
            4,
            f32s.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ));
        for (order, width, packed) in cases {
            let mut one_by_one = Bounds::default();
            for v in packed.chunks_exact(width) {
                one_by_one.add(order, v);
            }
            let mut packed_bounds = Bounds::default();
            packed_bounds.add_packed(order, width, &packed);
            assert_eq!(
                (
                    packed_bounds.written_min_max(),
                    packed_bounds.nans,
                    packed_bounds.values
                ),
                (
                    one_by_one.written_min_max(),
                    one_by_one.nans,
                    one_by_one.values
                ),
                "{order:?}"
            );
        }
    }
}
