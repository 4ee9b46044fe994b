//! A footer whose fields do not all have the wire type parquet-format's `parquet.thrift` gives
//! them, read as Thrift readers read it: such a field is skipped.
//!
//! parquet-mr and Arrow C++ read footers with Thrift's generated code, which skips a field
//! whose wire type is not the declared one; the parquet crate refuses the whole footer
//! instead. Some writers put fields of their own under ids the format later gave to others
//! (`dict-page-offset-zero.parquet`, from a Dremio build of parquet-mr, holds a list under
//! `ColumnMetaData` field 15, which the format declares as `i32 bloom_filter_length`). Dropping
//! exactly those fields gives the footer every other reader sees.

use super::compact::{Struct, Value, wire};

/// The structs of `parquet.thrift` a footer is checked through.
#[derive(Clone, Copy)]
enum Kind {
    FileMetaData,
    SchemaElement,
    RowGroup,
    ColumnChunk,
    ColumnMetaData,
    Statistics,
    KeyValue,
    SortingColumn,
    PageEncodingStats,
}

/// What a field holds: a scalar of a wire type, a struct, or a list.
#[derive(Clone, Copy)]
enum Expect {
    Bool,
    Scalar(u8),
    Struct(Option<Kind>),
    List(&'static Expect),
}

const BINARY: Expect = Expect::Scalar(wire::BINARY);
const I16: Expect = Expect::Scalar(wire::I16);
const I32: Expect = Expect::Scalar(wire::I32);
const I64: Expect = Expect::Scalar(wire::I64);
const ANY_STRUCT: Expect = Expect::Struct(None);

/// The declared type of field `id` of `kind` (parquet-format 2.11); `None` for ids the format
/// does not declare (the parquet crate skips those itself).
fn declared(kind: Kind, id: i16) -> Option<Expect> {
    use Kind as K;
    Some(match (kind, id) {
        (K::FileMetaData, 1) => I32,
        (K::FileMetaData, 2) => Expect::List(&Expect::Struct(Some(K::SchemaElement))),
        (K::FileMetaData, 3) => I64,
        (K::FileMetaData, 4) => Expect::List(&Expect::Struct(Some(K::RowGroup))),
        (K::FileMetaData, 5) => Expect::List(&Expect::Struct(Some(K::KeyValue))),
        (K::FileMetaData, 6) => BINARY,
        (K::FileMetaData, 7) => Expect::List(&ANY_STRUCT),
        (K::FileMetaData, 8) => ANY_STRUCT,
        (K::FileMetaData, 9) => BINARY,
        (K::SchemaElement, 1..=3 | 5..=9) => I32,
        (K::SchemaElement, 4) => BINARY,
        (K::SchemaElement, 10) => ANY_STRUCT,
        (K::RowGroup, 1) => Expect::List(&Expect::Struct(Some(K::ColumnChunk))),
        (K::RowGroup, 2 | 3 | 5 | 6) => I64,
        (K::RowGroup, 4) => Expect::List(&Expect::Struct(Some(K::SortingColumn))),
        (K::RowGroup, 7) => I16,
        (K::ColumnChunk, 1 | 9) => BINARY,
        (K::ColumnChunk, 2 | 4 | 6) => I64,
        (K::ColumnChunk, 3) => Expect::Struct(Some(K::ColumnMetaData)),
        (K::ColumnChunk, 5 | 7) => I32,
        (K::ColumnChunk, 8) => ANY_STRUCT,
        (K::ColumnMetaData, 1 | 4 | 15) => I32,
        (K::ColumnMetaData, 2) => Expect::List(&I32),
        (K::ColumnMetaData, 3) => Expect::List(&BINARY),
        (K::ColumnMetaData, 5..=7 | 9..=11 | 14) => I64,
        (K::ColumnMetaData, 8) => Expect::List(&Expect::Struct(Some(K::KeyValue))),
        (K::ColumnMetaData, 12) => Expect::Struct(Some(K::Statistics)),
        (K::ColumnMetaData, 13) => Expect::List(&Expect::Struct(Some(K::PageEncodingStats))),
        (K::ColumnMetaData, 16 | 17) => ANY_STRUCT,
        (K::Statistics, 1 | 2 | 5 | 6) => BINARY,
        (K::Statistics, 3 | 4) => I64,
        (K::Statistics, 7 | 8) => Expect::Bool,
        (K::KeyValue, 1 | 2) => BINARY,
        (K::SortingColumn, 1) => I32,
        (K::SortingColumn, 2 | 3) => Expect::Bool,
        (K::PageEncodingStats, 1..=3) => I32,
        _ => return None,
    })
}

/// `footer` (a `FileMetaData`) without the fields whose wire type is not the declared one, and
/// a sentence per field dropped (`"row group 0, column 0: ColumnMetaData field 15 (a list
/// where the format has an i32)"`). Elements of a list of the wrong element type drop the list.
pub(crate) fn drop_mistyped(footer: &mut Struct) -> Vec<String> {
    let mut dropped = Vec::new();
    check(footer, Kind::FileMetaData, "the footer", &mut dropped);
    dropped
}

fn check(s: &mut Struct, kind: Kind, at: &str, dropped: &mut Vec<String>) {
    s.fields.retain_mut(|(id, value)| {
        let Some(expect) = declared(kind, *id) else {
            return true;
        };
        let here = format!("{at}, {} field {id}", name(kind));
        if fits(value, expect, &here, dropped) {
            true
        } else {
            dropped.push(format!("{here} ({})", type_name(value.wire_type())));
            false
        }
    });
}

/// Whether `value` has the shape `expect` (checking inside the structs it holds, which may drop
/// their own mistyped fields).
fn fits(value: &mut Value, expect: Expect, at: &str, dropped: &mut Vec<String>) -> bool {
    match (expect, value) {
        (Expect::Bool, Value::Bool(_)) => true,
        (Expect::Scalar(t), v) => v.wire_type() == t,
        (Expect::Struct(kind), Value::Struct(s)) => {
            if let Some(kind) = kind {
                check(s, kind, at, dropped);
            }
            true
        }
        (Expect::List(elem), Value::List(wire::LIST | wire::SET, _, items)) => items
            .iter_mut()
            .enumerate()
            .all(|(i, item)| fits(item, *elem, &format!("{at}[{i}]"), dropped)),
        _ => false,
    }
}

fn name(kind: Kind) -> &'static str {
    match kind {
        Kind::FileMetaData => "FileMetaData",
        Kind::SchemaElement => "SchemaElement",
        Kind::RowGroup => "RowGroup",
        Kind::ColumnChunk => "ColumnChunk",
        Kind::ColumnMetaData => "ColumnMetaData",
        Kind::Statistics => "Statistics",
        Kind::KeyValue => "KeyValue",
        Kind::SortingColumn => "SortingColumn",
        Kind::PageEncodingStats => "PageEncodingStats",
    }
}

fn type_name(t: u8) -> &'static str {
    match t {
        wire::TRUE | wire::FALSE => "a bool",
        wire::I8 => "an i8",
        wire::I16 => "an i16",
        wire::I32 => "an i32",
        wire::I64 => "an i64",
        wire::DOUBLE => "a double",
        wire::BINARY => "a binary",
        wire::LIST => "a list",
        wire::SET => "a set",
        wire::MAP => "a map",
        _ => "a struct",
    }
}

#[cfg(test)]
mod tests {
    use super::super::compact::{read_struct, write_struct};
    use super::*;

    fn int(t: u8, v: i64) -> Value {
        Value::Int(t, v)
    }

    #[test]
    fn a_field_of_another_wire_type_is_dropped_and_everything_else_kept() {
        let meta = Struct {
            fields: vec![
                (1, int(wire::I32, 1)),
                (5, int(wire::I64, 39)),
                (9, int(wire::I64, 4)),
                (15, Value::List(wire::LIST, wire::STRUCT, vec![])),
            ],
        };
        let chunk = Struct {
            fields: vec![(2, int(wire::I64, 4)), (3, Value::Struct(meta))],
        };
        let rg = Struct {
            fields: vec![(
                1,
                Value::List(wire::LIST, wire::STRUCT, vec![Value::Struct(chunk)]),
            )],
        };
        let mut footer = Struct {
            fields: vec![
                (1, int(wire::I32, 1)),
                (3, int(wire::I64, 39)),
                (
                    4,
                    Value::List(wire::LIST, wire::STRUCT, vec![Value::Struct(rg)]),
                ),
                (6, Value::Binary(b"w".to_vec())),
                (99, Value::Binary(b"unknown ids stay".to_vec())),
            ],
        };
        let round = read_struct(&write_struct(&footer)).unwrap().0;
        assert_eq!(round, footer);
        let dropped = drop_mistyped(&mut footer);
        assert_eq!(dropped.len(), 1, "{dropped:?}");
        assert!(
            dropped[0].contains("ColumnMetaData field 15 (a list)"),
            "{dropped:?}"
        );
        let Value::List(_, _, rgs) = footer.get(4).unwrap() else {
            panic!()
        };
        let Value::Struct(rg) = &rgs[0] else { panic!() };
        let Value::List(_, _, chunks) = rg.get(1).unwrap() else {
            panic!()
        };
        let Value::Struct(chunk) = &chunks[0] else {
            panic!()
        };
        let Value::Struct(meta) = chunk.get(3).unwrap() else {
            panic!()
        };
        assert_eq!(
            meta.fields.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            [1, 5, 9]
        );
        assert!(footer.get(99).is_some());
    }

    #[test]
    fn a_well_typed_footer_loses_nothing() {
        let mut footer = Struct {
            fields: vec![
                (1, int(wire::I32, 2)),
                (
                    5,
                    Value::List(
                        wire::LIST,
                        wire::STRUCT,
                        vec![Value::Struct(Struct {
                            fields: vec![
                                (1, Value::Binary(b"k".to_vec())),
                                (2, Value::Binary(b"v".to_vec())),
                            ],
                        })],
                    ),
                ),
            ],
        };
        let before = footer.clone();
        assert!(drop_mistyped(&mut footer).is_empty());
        assert_eq!(footer, before);
    }
}
