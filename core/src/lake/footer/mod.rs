//! The footer of a lake file (parquet-format's `FileMetaData`), read as parquet-mr and Arrow
//! C++ read it: where a known writer broke the format in a way those readers forgive, the
//! footer is mended rather than the file refused; and, for a rewrite, written back with what
//! the parquet crate's writer cannot write.
//!
//! | module | idea it owns |
//! |---|---|
//! | [`compact`] | Thrift compact protocol values, read and written without a schema |
//! | [`lenient`] | fields whose wire type is not `parquet.thrift`'s are skipped, as Thrift readers skip them |
//! | [`mend`] | row counts, dictionary offsets of `0`, chunk sizes without the dictionary page header (PARQUET-816) |
//! | [`unknown_types`] | logical types newer than the parquet crate: stripped for its writer, restored in the footer written |

mod compact;
mod lenient;
mod mend;
mod unknown_types;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use bytes::Bytes;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};

pub(crate) use compact::Reader as ThriftReader;
pub(crate) use unknown_types::{Unknown, restore, writable_schema};

/// A footer, decoded and mended.
pub(crate) struct Footer {
    /// The metadata every reader of the file is given.
    pub metadata: Arc<ParquetMetaData>,
    /// Whether the file-level row count agreed with the row groups' (a footer that did not is
    /// not trusted to prune row groups).
    pub rows_agree: bool,
    /// What was skipped or mended, one sentence each (for the log).
    pub mended: Vec<String>,
    /// Why a rewrite could not keep this footer's meaning, when it could not.
    pub rewrite_refusal: Option<String>,
}

/// Reads the footer of a file of `size` bytes whose last bytes are `suffix` (at least its last
/// 8: footer length and magic; more saves a request), fetching the rest through `reader`.
///
/// The footer is decoded by the parquet crate. When that fails, fields whose wire type is not
/// the format's are dropped ([`lenient`]) and it is decoded again; the first error is
/// returned when that does not help. The result is then mended ([`mend`]).
///
/// # Errors
/// [`ParquetError`] when the footer is cut short, does not decode, or a fetch fails.
pub(crate) async fn read<R: AsyncFileReader>(
    reader: &mut R,
    size: u64,
    suffix: Bytes,
) -> Result<Footer, ParquetError> {
    let n = suffix.len();
    if n < 8 {
        return Err(ParquetError::General(
            "the file is shorter than a footer".into(),
        ));
    }
    let len = u64::from(u32::from_le_bytes(
        suffix[n - 8..n - 4].try_into().expect("4 bytes"),
    ));
    let data_end = size
        .checked_sub(8 + len)
        .filter(|&start| start >= 4)
        .ok_or_else(|| {
            ParquetError::General(format!(
                "the footer's length ({len} bytes) does not fit in a file of {size} bytes"
            ))
        })?;
    let bytes = if (len as usize) + 8 <= n {
        suffix.slice(n - 8 - len as usize..n - 8)
    } else {
        reader.get_bytes(data_end..size - 8).await?
    };
    let mut mended = Vec::new();
    let metadata = match ParquetMetaDataReader::decode_metadata(&bytes) {
        Ok(md) => md,
        Err(first) => {
            let Ok((mut raw, _)) = compact::read_struct(&bytes) else {
                return Err(first);
            };
            let dropped = lenient::drop_mistyped(&mut raw);
            if dropped.is_empty() {
                return Err(first);
            }
            let md = ParquetMetaDataReader::decode_metadata(&compact::write_struct(&raw))
                .map_err(|_| first)?;
            mended.extend(
                dropped
                    .into_iter()
                    .map(|d| format!("skipped {d}, a field of another type than the format's")),
            );
            md
        }
    };
    let unknown = unknown_types::unknown_types(metadata.file_metadata().schema());
    let rewrite_refusal = if unknown.is_empty() {
        None
    } else {
        match compact::read_struct(&bytes) {
            Ok((raw, _)) => unknown_types::with_parameters(&raw, &unknown)
                .into_iter()
                .next(),
            Err(e) => Some(format!(
                "its logical types unknown to this Parquet library could not be checked: {e}"
            )),
        }
    };
    let (metadata, rows_agree, notes) = mend::mend(Arc::new(metadata), reader, data_end).await?;
    mended.extend(notes);
    Ok(Footer {
        metadata,
        rows_agree,
        mended,
        rewrite_refusal,
    })
}
