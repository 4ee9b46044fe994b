//! Logical types newer than the parquet crate (`LogicalType::_Unknown`): readers treat such a
//! column by its physical type, and a rewrite must keep the annotation, but the crate's writer
//! refuses to write one. The writer is given the schema without them ([`writable_schema`]),
//! and the footer it wrote gets them back ([`restore`]).
//!
//! Only annotations without parameters can be restored this way (the parquet crate keeps the
//! union's field id, not its contents); [`with_parameters`] finds the others, so a rewrite can
//! refuse such a file instead of losing them.

use std::sync::Arc;

use parquet::basic::LogicalType;
use parquet::errors::ParquetError;
use parquet::schema::types::{Type, TypePtr};

use super::compact::{Struct, Value, read_struct, write_struct};

/// A logical type to put back: the schema element (index in the footer's flattened schema
/// list, the root being 0) and the union field id of its `LogicalType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unknown {
    pub element: usize,
    pub field_id: i16,
}

/// The unknown logical types of `root`, in schema order.
pub(crate) fn unknown_types(root: &Type) -> Vec<Unknown> {
    fn walk(t: &Type, at: &mut usize, out: &mut Vec<Unknown>) {
        if let Some(LogicalType::_Unknown { field_id }) = t.get_basic_info().logical_type_ref() {
            out.push(Unknown {
                element: *at,
                field_id: *field_id,
            });
        }
        *at += 1;
        if t.is_group() {
            for f in t.get_fields() {
                walk(f, at, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, &mut 0, &mut out);
    out
}

/// `root` with every unknown logical type removed (other nodes shared, not rebuilt), and the
/// types removed; `root` itself when it has none.
///
/// # Errors
/// The parquet crate's error when a node cannot be rebuilt.
pub(crate) fn writable_schema(root: &TypePtr) -> Result<(TypePtr, Vec<Unknown>), ParquetError> {
    let unknown = unknown_types(root);
    if unknown.is_empty() {
        return Ok((Arc::clone(root), unknown));
    }
    Ok((strip(root)?, unknown))
}

fn has_unknown(t: &Type) -> bool {
    matches!(
        t.get_basic_info().logical_type_ref(),
        Some(LogicalType::_Unknown { .. })
    ) || (t.is_group() && t.get_fields().iter().any(|f| has_unknown(f)))
}

fn strip(t: &TypePtr) -> Result<TypePtr, ParquetError> {
    if !has_unknown(t) {
        return Ok(Arc::clone(t));
    }
    let info = t.get_basic_info();
    let logical = match info.logical_type_ref() {
        Some(LogicalType::_Unknown { .. }) => None,
        other => other.cloned(),
    };
    let id = info.has_id().then(|| info.id());
    let built = match t.as_ref() {
        Type::PrimitiveType {
            physical_type,
            type_length,
            scale,
            precision,
            ..
        } => {
            let mut b = Type::primitive_type_builder(info.name(), *physical_type)
                .with_converted_type(info.converted_type())
                .with_logical_type(logical)
                .with_length(*type_length)
                .with_precision(*precision)
                .with_scale(*scale)
                .with_id(id);
            if info.has_repetition() {
                b = b.with_repetition(info.repetition());
            }
            b.build()?
        }
        Type::GroupType { fields, .. } => {
            let fields = fields.iter().map(strip).collect::<Result<Vec<_>, _>>()?;
            let mut b = Type::group_type_builder(info.name())
                .with_converted_type(info.converted_type())
                .with_logical_type(logical)
                .with_fields(fields)
                .with_id(id);
            if info.has_repetition() {
                b = b.with_repetition(info.repetition());
            }
            b.build()?
        }
    };
    Ok(Arc::new(built))
}

/// The schema elements of `footer` (a `FileMetaData`) whose unknown logical type carries
/// parameters, as sentences; empty when every one in `unknown` is a bare annotation.
pub(crate) fn with_parameters(footer: &Struct, unknown: &[Unknown]) -> Vec<String> {
    let Some(Value::List(_, _, elements)) = footer.get(2) else {
        return Vec::new();
    };
    unknown
        .iter()
        .filter_map(|u| {
            let Some(Value::Struct(element)) = elements.get(u.element) else {
                return Some(format!("schema element {} is missing", u.element));
            };
            let bare = matches!(
                element.get(10),
                Some(Value::Struct(union)) if union.fields.len() == 1
                    && matches!(&union.fields[0], (id, Value::Struct(s)) if *id == u.field_id && s.fields.is_empty())
            );
            (!bare).then(|| {
                let name = match element.get(4) {
                    Some(Value::Binary(b)) => String::from_utf8_lossy(b).into_owned(),
                    _ => format!("#{}", u.element),
                };
                format!(
                    "column {name:?} has logical type {} with parameters this Parquet \
                     library does not know, which a rewrite could not keep",
                    u.field_id
                )
            })
        })
        .collect()
}

/// `tail` (the last bytes of a file: `… footer, its length, PAR1`) with the logical types
/// `unknown` put back into the footer's schema elements, as bare annotations.
///
/// # Errors
/// A sentence when `tail` does not end with a footer that decodes.
pub(crate) fn restore(tail: Vec<u8>, unknown: &[Unknown]) -> Result<Vec<u8>, String> {
    if unknown.is_empty() {
        return Ok(tail);
    }
    let n = tail.len();
    if n < 8 || &tail[n - 4..] != b"PAR1" {
        return Err("the file does not end with a footer".into());
    }
    let len = u32::from_le_bytes(tail[n - 8..n - 4].try_into().expect("4 bytes")) as usize;
    let start = (n - 8)
        .checked_sub(len)
        .ok_or("the footer is longer than the bytes written last")?;
    let (mut footer, used) = read_struct(&tail[start..n - 8])?;
    if used != len {
        return Err("the footer's length does not match its bytes".into());
    }
    let Some(Value::List(_, _, elements)) = footer.get_mut(2) else {
        return Err("the footer has no schema".into());
    };
    for u in unknown {
        let Some(Value::Struct(element)) = elements.get_mut(u.element) else {
            return Err(format!("the footer has no schema element {}", u.element));
        };
        let union = Struct {
            fields: vec![(u.field_id, Value::Struct(Struct::default()))],
        };
        element.set(10, Value::Struct(union));
    }
    let bytes = write_struct(&footer);
    let mut out = Vec::with_capacity(start + bytes.len() + 8);
    out.extend_from_slice(&tail[..start]);
    out.extend_from_slice(&bytes);
    let len = u32::try_from(bytes.len()).map_err(|_| "the footer is over 4 GiB")?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(b"PAR1");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use parquet::basic::{Repetition, Type as PhysicalType};
    use parquet::file::metadata::ParquetMetaDataReader;
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;

    use super::super::compact::wire;
    use super::*;

    fn schema(unknown: bool) -> TypePtr {
        let known = Type::primitive_type_builder("known", PhysicalType::BYTE_ARRAY)
            .with_repetition(Repetition::OPTIONAL)
            .with_logical_type(Some(LogicalType::String))
            .build()
            .unwrap();
        let other = Type::primitive_type_builder("other", PhysicalType::BYTE_ARRAY)
            .with_repetition(Repetition::OPTIONAL)
            .with_logical_type(unknown.then_some(LogicalType::_Unknown { field_id: 2555 }))
            .with_id(Some(7))
            .build()
            .unwrap();
        let group = Type::group_type_builder("g")
            .with_repetition(Repetition::OPTIONAL)
            .with_fields(vec![Arc::new(other)])
            .build()
            .unwrap();
        Arc::new(
            Type::group_type_builder("schema")
                .with_fields(vec![Arc::new(known), Arc::new(group)])
                .build()
                .unwrap(),
        )
    }

    #[test]
    fn an_unknown_type_is_stripped_for_the_writer_and_restored_in_its_footer() {
        let original = schema(true);
        let (writable, unknown) = writable_schema(&original).unwrap();
        assert_eq!(
            unknown,
            [Unknown {
                element: 3,
                field_id: 2555
            }]
        );
        assert_eq!(writable, schema(false));
        // The untouched column is shared, not rebuilt.
        assert!(Arc::ptr_eq(
            &writable.get_fields()[0],
            &original.get_fields()[0]
        ));
        let mut buf = Vec::new();
        let w = SerializedFileWriter::new(&mut buf, writable, Arc::new(WriterProperties::new()))
            .unwrap();
        w.close().unwrap();
        let fixed = restore(buf, &unknown).unwrap();
        let md = ParquetMetaDataReader::new()
            .parse_and_finish(&bytes::Bytes::from(fixed))
            .unwrap();
        assert_eq!(md.file_metadata().schema(), original.as_ref());
    }

    #[test]
    fn a_schema_without_unknown_types_is_left_alone() {
        let original = schema(false);
        let (writable, unknown) = writable_schema(&original).unwrap();
        assert!(unknown.is_empty());
        assert!(Arc::ptr_eq(&writable, &original));
        assert_eq!(restore(b"xyzPAR1".to_vec(), &unknown).unwrap(), b"xyzPAR1");
    }

    #[test]
    fn parameters_of_an_unknown_type_are_found() {
        let with = |content: Struct| Struct {
            fields: vec![(
                2,
                Value::List(
                    wire::LIST,
                    wire::STRUCT,
                    vec![
                        Value::Struct(Struct::default()),
                        Value::Struct(Struct {
                            fields: vec![
                                (4, Value::Binary(b"c".to_vec())),
                                (
                                    10,
                                    Value::Struct(Struct {
                                        fields: vec![(2555, Value::Struct(content))],
                                    }),
                                ),
                            ],
                        }),
                    ],
                ),
            )],
        };
        let u = [Unknown {
            element: 1,
            field_id: 2555,
        }];
        assert!(with_parameters(&with(Struct::default()), &u).is_empty());
        let param = Struct {
            fields: vec![(1, Value::Int(wire::I32, 3))],
        };
        let found = with_parameters(&with(param), &u);
        assert_eq!(found.len(), 1);
        assert!(
            found[0].contains("\"c\" has logical type 2555"),
            "{found:?}"
        );
    }
}
