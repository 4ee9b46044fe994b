//! Thrift compact protocol values, read and written without a schema (Apache Thrift's
//! "Thrift Compact protocol encoding", the encoding of every Parquet footer and page header).
//!
//! A footer is read into [`Value`]s, mended where a writer broke the format, and written
//! back; fields keep their order, and every value its wire type.

/// Nesting deeper than this is refused (a Parquet footer nests about eight levels).
const MAX_DEPTH: usize = 64;

/// A compact-protocol wire type (the low nibble of a field header).
pub(crate) mod wire {
    pub const TRUE: u8 = 1;
    pub const FALSE: u8 = 2;
    pub const I8: u8 = 3;
    pub const I16: u8 = 4;
    pub const I32: u8 = 5;
    pub const I64: u8 = 6;
    pub const DOUBLE: u8 = 7;
    pub const BINARY: u8 = 8;
    pub const LIST: u8 = 9;
    pub const SET: u8 = 10;
    pub const MAP: u8 = 11;
    pub const STRUCT: u8 = 12;
}

/// One value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Bool(bool),
    I8(i8),
    /// Any of i16, i32 and i64, with its wire type.
    Int(u8, i64),
    Double(f64),
    Binary(Vec<u8>),
    /// A list or set: its wire type, its elements' wire type, the elements.
    List(u8, u8, Vec<Value>),
    /// Key and value wire types, the pairs.
    Map(u8, u8, Vec<(Value, Value)>),
    Struct(Struct),
}

/// A struct's fields, in the order they were read.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Struct {
    pub fields: Vec<(i16, Value)>,
}

impl Value {
    /// The wire type a field holding this value is written with.
    pub(crate) fn wire_type(&self) -> u8 {
        match self {
            Value::Bool(true) => wire::TRUE,
            Value::Bool(false) => wire::FALSE,
            Value::I8(_) => wire::I8,
            Value::Int(t, _) | Value::List(t, _, _) => *t,
            Value::Double(_) => wire::DOUBLE,
            Value::Binary(_) => wire::BINARY,
            Value::Map(..) => wire::MAP,
            Value::Struct(_) => wire::STRUCT,
        }
    }

    /// The integer, when this is one.
    pub(crate) fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(_, v) => Some(*v),
            _ => None,
        }
    }
}

impl Struct {
    /// The value of field `id`.
    pub(crate) fn get(&self, id: i16) -> Option<&Value> {
        self.fields.iter().find(|(f, _)| *f == id).map(|(_, v)| v)
    }

    /// The value of field `id`, mutable.
    pub(crate) fn get_mut(&mut self, id: i16) -> Option<&mut Value> {
        self.fields
            .iter_mut()
            .find(|(f, _)| *f == id)
            .map(|(_, v)| v)
    }

    /// Sets field `id`, keeping fields in ascending id order when it is new.
    pub(crate) fn set(&mut self, id: i16, value: Value) {
        if let Some(v) = self.get_mut(id) {
            *v = value;
        } else {
            let at = self
                .fields
                .iter()
                .position(|(f, _)| *f > id)
                .unwrap_or(self.fields.len());
            self.fields.insert(at, (id, value));
        }
    }
}

/// Reads one struct from the start of `buf`; returns it and the bytes it took.
///
/// # Errors
/// A sentence when the bytes are not a compact-protocol struct.
pub(crate) fn read_struct(buf: &[u8]) -> Result<(Struct, usize), String> {
    let mut r = Reader::new(buf);
    let s = r.read_struct(0)?;
    Ok((s, r.pos))
}

/// The compact-protocol bytes of `s`.
pub(crate) fn write_struct(s: &Struct) -> Vec<u8> {
    let mut out = Vec::new();
    put_struct(&mut out, s);
    out
}

/// A read position in compact-protocol bytes; errors are sentences.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes read so far.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn byte(&mut self) -> Result<u8, String> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or_else(|| format!("cut short at byte {}", self.pos))?;
        self.pos += 1;
        Ok(b)
    }

    fn bytes(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| {
                format!(
                    "a value of {n} bytes at byte {} runs past the end",
                    self.pos
                )
            })?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    pub(crate) fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(format!("an overlong varint before byte {}", self.pos))
    }

    pub(crate) fn zigzag(&mut self) -> Result<i64, String> {
        let v = self.varint()?;
        Ok((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    fn len(&mut self) -> Result<usize, String> {
        let n = self.varint()?;
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= self.buf.len())
            .ok_or_else(|| format!("a length of {n} at byte {}", self.pos))
    }

    /// The next field header of a struct: its id and wire type, `None` at the struct's end;
    /// `last` is the previous field's id (ids are written as deltas from it).
    pub(crate) fn field_header(&mut self, last: &mut i16) -> Result<Option<(i16, u8)>, String> {
        let head = self.byte()?;
        if head == 0 {
            return Ok(None);
        }
        let delta = i64::from(head >> 4);
        let id = if delta == 0 {
            self.zigzag()?
        } else {
            i64::from(*last) + delta
        };
        *last = i16::try_from(id).map_err(|_| format!("field id {id} out of range"))?;
        Ok(Some((*last, head & 0x0f)))
    }

    /// Skips one value of wire type `kind` without keeping it: a field's value (a boolean
    /// field's is in its header, so nothing is read).
    pub(crate) fn skip_value(&mut self, kind: u8, depth: usize) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err("structs nest too deep".into());
        }
        match kind {
            wire::TRUE | wire::FALSE => Ok(()),
            wire::I8 => self.byte().map(|_| ()),
            wire::I16 | wire::I32 | wire::I64 => self.varint().map(|_| ()),
            wire::DOUBLE => self.bytes(8).map(|_| ()),
            wire::BINARY => {
                let n = self.len()?;
                self.bytes(n).map(|_| ())
            }
            wire::LIST | wire::SET => {
                let head = self.byte()?;
                let elem = head & 0x0f;
                let mut n = usize::from(head >> 4);
                if n == 15 {
                    n = self.len()?;
                }
                for _ in 0..n {
                    self.skip_element(elem, depth + 1)?;
                }
                Ok(())
            }
            wire::MAP => {
                let n = self.len()?;
                if n == 0 {
                    return Ok(());
                }
                let types = self.byte()?;
                for _ in 0..n {
                    self.skip_element(types >> 4, depth + 1)?;
                    self.skip_element(types & 0x0f, depth + 1)?;
                }
                Ok(())
            }
            wire::STRUCT => {
                let mut last = 0;
                while let Some((_, kind)) = self.field_header(&mut last)? {
                    self.skip_value(kind, depth + 1)?;
                }
                Ok(())
            }
            other => Err(format!("unknown Thrift type {other} at byte {}", self.pos)),
        }
    }

    /// Skips one element of a list, set or map (a boolean element takes a byte).
    fn skip_element(&mut self, kind: u8, depth: usize) -> Result<(), String> {
        if matches!(kind, wire::TRUE | wire::FALSE) {
            self.byte().map(|_| ())
        } else {
            self.skip_value(kind, depth)
        }
    }

    fn read_struct(&mut self, depth: usize) -> Result<Struct, String> {
        if depth > MAX_DEPTH {
            return Err("structs nest too deep".into());
        }
        let mut s = Struct::default();
        let mut last = 0;
        loop {
            let Some((id, kind)) = self.field_header(&mut last)? else {
                return Ok(s);
            };
            let value = match kind {
                wire::TRUE => Value::Bool(true),
                wire::FALSE => Value::Bool(false),
                _ => self.value(kind, depth)?,
            };
            s.fields.push((id, value));
        }
    }

    /// A value of wire type `kind` (not a boolean field, whose value is in its header).
    fn value(&mut self, kind: u8, depth: usize) -> Result<Value, String> {
        Ok(match kind {
            // A boolean element of a list or map takes a byte.
            wire::TRUE | wire::FALSE => Value::Bool(self.byte()? == 1),
            wire::I8 => Value::I8(self.byte()? as i8),
            wire::I16 | wire::I32 | wire::I64 => Value::Int(kind, self.zigzag()?),
            wire::DOUBLE => {
                let b: [u8; 8] = self.bytes(8)?.try_into().expect("8 bytes");
                Value::Double(f64::from_le_bytes(b))
            }
            wire::BINARY => {
                let n = self.len()?;
                Value::Binary(self.bytes(n)?.to_vec())
            }
            wire::LIST | wire::SET => {
                let head = self.byte()?;
                let elem = head & 0x0f;
                let mut n = usize::from(head >> 4);
                if n == 15 {
                    n = self.len()?;
                }
                let mut items = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    items.push(self.value(elem, depth + 1)?);
                }
                Value::List(kind, elem, items)
            }
            wire::MAP => {
                let n = self.len()?;
                if n == 0 {
                    return Ok(Value::Map(0, 0, Vec::new()));
                }
                let types = self.byte()?;
                let (k, v) = (types >> 4, types & 0x0f);
                let mut pairs = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    pairs.push((self.value(k, depth + 1)?, self.value(v, depth + 1)?));
                }
                Value::Map(k, v, pairs)
            }
            wire::STRUCT => Value::Struct(self.read_struct(depth + 1)?),
            other => return Err(format!("unknown Thrift type {other} at byte {}", self.pos)),
        })
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_zigzag(out: &mut Vec<u8>, v: i64) {
    put_varint(out, ((v << 1) ^ (v >> 63)) as u64);
}

fn put_struct(out: &mut Vec<u8>, s: &Struct) {
    let mut last = 0i16;
    for (id, value) in &s.fields {
        let kind = value.wire_type();
        let delta = i32::from(*id) - i32::from(last);
        if (1..=15).contains(&delta) {
            out.push(((delta as u8) << 4) | kind);
        } else {
            out.push(kind);
            put_zigzag(out, i64::from(*id));
        }
        last = *id;
        if !matches!(value, Value::Bool(_)) {
            put_value(out, value);
        }
    }
    out.push(0);
}

/// Writes `value`'s body (a boolean as a byte, as list and map elements are).
fn put_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Bool(b) => out.push(if *b { 1 } else { 2 }),
        Value::I8(v) => out.push(*v as u8),
        Value::Int(_, v) => put_zigzag(out, *v),
        Value::Double(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::Binary(b) => {
            put_varint(out, b.len() as u64);
            out.extend_from_slice(b);
        }
        Value::List(_, elem, items) => {
            if items.len() < 15 {
                out.push(((items.len() as u8) << 4) | elem);
            } else {
                out.push(0xf0 | elem);
                put_varint(out, items.len() as u64);
            }
            for item in items {
                put_value(out, item);
            }
        }
        Value::Map(k, v, pairs) => {
            put_varint(out, pairs.len() as u64);
            if !pairs.is_empty() {
                out.push((k << 4) | v);
                for (key, val) in pairs {
                    put_value(out, key);
                    put_value(out, val);
                }
            }
        }
        Value::Struct(s) => put_struct(out, s),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Int64Array, RecordBatch, StringArray};
    use parquet::arrow::ArrowWriter;
    use parquet::file::properties::{EnabledStatistics, WriterProperties};

    use super::*;

    /// The footer of a file with statistics, key-value metadata, a dictionary and bloom filters.
    fn footer() -> Vec<u8> {
        let batch = RecordBatch::try_from_iter([
            (
                "id",
                Arc::new(Int64Array::from_iter_values(-50..50)) as arrow_array::ArrayRef,
            ),
            (
                "name",
                Arc::new(StringArray::from_iter_values(
                    (0..100).map(|i| format!("n-{}", i % 7)),
                )),
            ),
        ])
        .unwrap();
        let props = WriterProperties::builder()
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_bloom_filter_enabled(true)
            .build();
        let mut buf = Vec::new();
        let mut w = ArrowWriter::try_new(&mut buf, batch.schema(), Some(props)).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let n = u32::from_le_bytes(buf[buf.len() - 8..buf.len() - 4].try_into().unwrap()) as usize;
        buf[buf.len() - 8 - n..buf.len() - 8].to_vec()
    }

    #[test]
    fn a_footer_reads_and_writes_back_byte_for_byte() {
        let bytes = footer();
        let (s, used) = read_struct(&bytes).unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(write_struct(&s), bytes);
        // num_rows (field 3) is where parquet.thrift says.
        assert_eq!(s.get(3).and_then(Value::as_int), Some(100));
    }

    #[test]
    fn a_field_set_out_of_order_is_written_in_id_order_with_long_headers_where_needed() {
        let mut s = Struct::default();
        s.set(40, Value::Int(wire::I32, -7));
        s.set(2, Value::Binary(b"x".to_vec()));
        s.set(3, Value::Bool(false));
        let bytes = write_struct(&s);
        let (back, used) = read_struct(&bytes).unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(back, s);
        assert_eq!(
            back.fields.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            [2, 3, 40]
        );
    }

    #[test]
    fn truncated_and_unknown_bytes_are_errors_not_panics() {
        let bytes = footer();
        for cut in [1, bytes.len() / 2, bytes.len() - 1] {
            assert!(read_struct(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        assert!(read_struct(&[0x1d]).is_err(), "type 13 does not exist");
        assert!(read_struct(&[0x18, 0xff, 0xff, 0xff, 0x7f]).is_err());
    }
}
