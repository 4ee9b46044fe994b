//! Opening one Parquet file of the lake: magic check, footer, Arrow schema, subject column.
//!
//! Every byte fetched from the store goes through [`LakeFileReader`], which counts it, so the
//! operations can report `bytes_read` (footer + column chunks + bloom filters).

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::errors::ParquetError;
use parquet::file::metadata::ParquetMetaData;
use parquet::schema::types::SchemaDescriptor;

use super::error::LakeError;
use super::footer;

/// Bytes fetched with the footer on the first request (most footers fit).
const FOOTER_HINT: usize = 64 * 1024;

/// An [`AsyncFileReader`] over one object that counts the bytes it fetches.
#[derive(Clone)]
pub(crate) struct LakeFileReader {
    store: Arc<dyn ObjectStore>,
    location: Path,
    size: u64,
    bytes_read: Arc<AtomicU64>,
}

impl LakeFileReader {
    pub(crate) fn new(store: Arc<dyn ObjectStore>, location: Path, size: u64) -> Self {
        Self {
            store,
            location,
            size,
            bytes_read: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Size of the object in bytes.
    pub(crate) fn len(&self) -> u64 {
        self.size
    }

    /// Bytes fetched so far by this reader and its clones.
    pub(crate) fn bytes_read(&self) -> u64 {
        self.bytes_read.load(Ordering::Relaxed)
    }

    fn count(&self, n: u64) {
        self.bytes_read.fetch_add(n, Ordering::Relaxed);
    }
}

fn external(e: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(e))
}

impl AsyncFileReader for LakeFileReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        async move {
            let bytes = self
                .store
                .get_range(&self.location, range)
                .await
                .map_err(external)?;
            self.count(bytes.len() as u64);
            Ok(bytes)
        }
        .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        async move {
            let parts = self
                .store
                .get_ranges(&self.location, &ranges)
                .await
                .map_err(external)?;
            self.count(parts.iter().map(|b| b.len() as u64).sum());
            Ok(parts)
        }
        .boxed()
    }

    /// The footer as [`open`] reads it (through [`footer::read`], mended), so a reader built
    /// from this one sees the same metadata. `options` are not used.
    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let size = self.size;
            let suffix = self
                .get_bytes(size - (FOOTER_HINT as u64).min(size)..size)
                .await?;
            Ok(footer::read(self, size, suffix).await?.metadata)
        }
        .boxed()
    }
}

/// A Parquet file whose footer has been read.
pub(crate) struct OpenFile {
    /// Path relative to the lake root (for messages).
    pub relative: String,
    /// Reader to build record batch streams from (clones share the byte counter).
    pub reader: LakeFileReader,
    /// Footer (read and mended by [`footer::read`]) and Arrow schema.
    pub metadata: ArrowReaderMetadata,
    /// Whether the footer's file-level row count agreed with its row groups (a footer that
    /// did not is not trusted to prune row groups).
    pub footer_rows_agree: bool,
    /// Why a rewrite could not keep what this footer says, when it could not (the file can
    /// still be read).
    pub rewrite_refusal: Option<String>,
}

impl OpenFile {
    /// The Parquet schema of the file.
    pub fn parquet_schema(&self) -> &SchemaDescriptor {
        self.metadata.parquet_schema()
    }

    /// Rows in the file: the sum of its row groups' row counts (the file-level count of some
    /// writers is wrong; see [`crate::lake::trust`]).
    pub fn num_rows(&self) -> u64 {
        self.metadata
            .metadata()
            .row_groups()
            .iter()
            .map(|rg| u64::try_from(rg.num_rows()).unwrap_or(0))
            .sum()
    }

    /// Index of the leaf column that is the top-level column `name`.
    ///
    /// # Errors
    /// [`LakeError::MissingColumn`] when there is no top-level primitive column of that name.
    pub fn subject_leaf(&self, name: &str) -> Result<usize, LakeError> {
        self.parquet_schema()
            .columns()
            .iter()
            .position(|c| c.path().parts().len() == 1 && c.path().parts()[0] == name)
            .ok_or_else(|| LakeError::MissingColumn {
                file: self.relative.clone(),
                column: name.to_string(),
            })
    }
}

/// Opens `location` (size `size` bytes): checks the `PAR1` magic, reads the footer and maps the
/// schema to Arrow.
///
/// # Errors
/// [`LakeError::NotParquet`] (too short, no magic), [`LakeError::Unsupported`] (encrypted
/// footer, schema Arrow cannot represent), [`LakeError::Corrupt`] (footer does not decode),
/// [`LakeError::ObjectStore`].
pub(crate) async fn open(
    store: &Arc<dyn ObjectStore>,
    location: &Path,
    relative: &str,
    size: u64,
) -> Result<OpenFile, LakeError> {
    let not_parquet = |reason: String| LakeError::NotParquet {
        file: relative.to_string(),
        reason,
    };
    if size < 12 {
        return Err(not_parquet(format!(
            "{size} bytes, a Parquet file has at least 12"
        )));
    }
    let mut reader = LakeFileReader::new(Arc::clone(store), location.clone(), size);
    let suffix = size - (FOOTER_HINT as u64).min(size - 4);
    let ends = store
        .get_ranges(location, &[0..4, suffix..size])
        .await
        .map_err(|e| LakeError::store(location, e))?;
    reader.count(ends.iter().map(|b| b.len() as u64).sum());
    let (head, suffix) = (&ends[0][..], ends[1].clone());
    let tail = &suffix[suffix.len() - 4..];
    if tail == b"PARE" {
        return Err(LakeError::Unsupported {
            file: relative.to_string(),
            reason: "the footer is encrypted (Parquet modular encryption); no keys are configured"
                .into(),
        });
    }
    if head != b"PAR1" || tail != b"PAR1" {
        return Err(not_parquet(format!(
            "no PAR1 magic (starts with {head:02x?}, ends with {tail:02x?})"
        )));
    }
    let footer = footer::read(&mut reader, size, suffix)
        .await
        .map_err(|e| LakeError::corrupt(relative, "reading the footer", e))?;
    if !footer.rows_agree {
        tracing::warn!(
            file = relative,
            "the footer's row count disagrees with its row groups; the row groups are believed"
        );
    }
    for note in &footer.mended {
        tracing::warn!(file = relative, "footer mended: {note}");
    }
    let metadata = ArrowReaderMetadata::try_new(footer.metadata, ArrowReaderOptions::new())
        .map_err(|e| LakeError::Unsupported {
            file: relative.to_string(),
            reason: format!("its schema cannot be mapped to Arrow: {e}"),
        })?;
    Ok(OpenFile {
        relative: relative.to_string(),
        reader,
        metadata,
        footer_rows_agree: footer.rows_agree,
        rewrite_refusal: footer.rewrite_refusal,
    })
}
