//! The upload of a new file on S3 that copies the original's untouched byte ranges
//! server-side: one multipart upload whose parts are either uploaded (`UploadPart`, bytes the
//! worker wrote) or copied by S3 from the original (`UploadPartCopy`, a byte range of it,
//! only while its ETag is still the one listed: `x-amz-copy-source-if-match`).
//!
//! S3's rules shape the parts: every part but the last holds at least
//! [`MIN_S3_PART_SIZE`] (5 MiB) and at most 5 GiB (copied parts here at most
//! [`MAX_COPY_PART`], 512 MiB); at most [`MAX_S3_PARTS`] parts. Bytes written before a copied range must therefore form a part of
//! at least 5 MiB: when fewer are buffered, the start of the range is fetched (a ranged GET,
//! also conditional on the ETag) to top the buffer up to 5 MiB, and the rest is copied only
//! if it still holds 5 MiB; a shorter range is fetched whole. A range right after the file's
//! 4-byte magic is copied from offset 0, magic included (both files start with `PAR1`).

use std::ops::Range;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore};
use tokio::task::JoinSet;

use crate::lake::error::LakeError;
use crate::lake::s3::{MAX_S3_PARTS, S3Client, UploadedPart};
use crate::lake::store::MIN_S3_PART_SIZE;

/// The largest range one `UploadPartCopy` copies: 512 MiB (S3 allows 5 GiB), so each copy
/// stays well inside the lake's request timeout (60 s) at S3's copy rates; a longer range
/// becomes several parts of equal size (each then at least 256 MiB).
const MAX_COPY_PART: u64 = 512 * 1024 * 1024;

/// The first (and last) 4 bytes of every Parquet file (parquet-format, "File format").
const PARQUET_MAGIC: [u8; 4] = *b"PAR1";

/// Parts sent at the same time (as object_store's own multipart writer does).
const MAX_IN_FLIGHT: usize = 8;

/// The original the upload copies from.
#[derive(Clone)]
pub(crate) struct CopySource {
    /// Its key.
    pub location: Path,
    /// Relative path, for [`LakeError::Changed`].
    pub relative: String,
    /// Its ETag as listed: every copy and fetch is conditional on it.
    pub e_tag: String,
}

/// A multipart upload of `key` built from written bytes and ranges of [`CopySource`].
pub(crate) struct PartUpload {
    s3: Arc<S3Client>,
    store: Arc<dyn ObjectStore>,
    key: Path,
    source: CopySource,
    /// Bytes per uploaded part (at least 5 MiB).
    part_size: usize,
    upload_id: Option<String>,
    /// Parts numbered so far (sent or in flight).
    numbered: u32,
    in_flight: JoinSet<Result<UploadedPart, LakeError>>,
    /// Parts acknowledged by S3, in any order.
    parts: Vec<UploadedPart>,
    buffer: BytesMut,
    /// A range of the original given but not yet copied: the next range may continue it.
    pending: Option<Range<u64>>,
    /// Bytes S3 copied itself.
    pub server_side: u64,
    /// Bytes of the original fetched to form parts.
    pub fetched: u64,
}

impl PartUpload {
    /// An upload of `key` (nothing is sent before the first part).
    pub(crate) fn new(
        s3: Arc<S3Client>,
        store: Arc<dyn ObjectStore>,
        key: Path,
        source: CopySource,
        part_size: usize,
    ) -> Self {
        Self {
            s3,
            store,
            key,
            source,
            part_size: part_size.max(MIN_S3_PART_SIZE),
            upload_id: None,
            numbered: 0,
            in_flight: JoinSet::new(),
            parts: Vec::new(),
            buffer: BytesMut::new(),
            pending: None,
            server_side: 0,
            fetched: 0,
        }
    }

    /// Parts uploaded or copied so far.
    pub(crate) fn parts(&self) -> u64 {
        u64::from(self.numbered)
    }

    fn store_error(&self, e: object_store::Error) -> LakeError {
        LakeError::store(&self.key, e)
    }

    fn source_error(&self, e: object_store::Error) -> LakeError {
        source_error(&self.source, e)
    }

    async fn upload_id(&mut self) -> Result<String, LakeError> {
        if let Some(id) = &self.upload_id {
            return Ok(id.clone());
        }
        let id = self
            .s3
            .create_multipart(&self.key)
            .await
            .map_err(|e| self.store_error(e))?;
        self.upload_id = Some(id.clone());
        Ok(id)
    }

    fn next_number(&mut self) -> Result<u32, LakeError> {
        let n = self.numbered + 1;
        if n > MAX_S3_PARTS {
            return Err(LakeError::store(
                &self.key,
                object_store::Error::Generic {
                    store: "S3",
                    source: format!("the new file needs more than {MAX_S3_PARTS} parts").into(),
                },
            ));
        }
        self.numbered = n;
        Ok(n)
    }

    /// Collects the parts that finished; with `all`, waits for every part in flight, else
    /// only until fewer than [`MAX_IN_FLIGHT`] are.
    async fn collect(&mut self, all: bool) -> Result<(), LakeError> {
        while all && !self.in_flight.is_empty() || self.in_flight.len() >= MAX_IN_FLIGHT {
            match self.in_flight.join_next().await {
                Some(Ok(part)) => self.parts.push(part?),
                Some(Err(e)) => {
                    return Err(LakeError::Io(std::io::Error::other(format!(
                        "an upload part task failed: {e}"
                    ))));
                }
                None => break,
            }
        }
        Ok(())
    }

    /// Sends the first `n` buffered bytes as the next part.
    async fn upload_buffered(&mut self, n: usize) -> Result<(), LakeError> {
        let bytes = self.buffer.split_to(n).freeze();
        let id = self.upload_id().await?;
        let number = self.next_number()?;
        self.collect(false).await?;
        let (s3, key) = (Arc::clone(&self.s3), self.key.clone());
        self.in_flight.spawn(async move {
            s3.upload_part(&key, &id, number, bytes)
                .await
                .map_err(|e| LakeError::store(&key, e))
        });
        Ok(())
    }

    /// Appends bytes written by the worker.
    pub(crate) async fn put(&mut self, bytes: &[u8]) -> Result<(), LakeError> {
        if bytes.is_empty() {
            return Ok(());
        }
        if let Some(range) = self.pending.take() {
            self.copy_now(range).await?;
        }
        self.append(bytes).await
    }

    async fn append(&mut self, bytes: &[u8]) -> Result<(), LakeError> {
        self.buffer.extend_from_slice(bytes);
        while self.buffer.len() >= self.part_size {
            self.upload_buffered(self.part_size).await?;
        }
        Ok(())
    }

    /// Fetches bytes `range` of the original (conditional on its ETag).
    async fn fetch(&mut self, range: Range<u64>) -> Result<Bytes, LakeError> {
        let options = GetOptions {
            range: Some(GetRange::Bounded(range)),
            if_match: Some(self.source.e_tag.clone()),
            ..GetOptions::default()
        };
        let got = self
            .store
            .get_opts(&self.source.location, options)
            .await
            .map_err(|e| self.source_error(e))?;
        let bytes = got.bytes().await.map_err(|e| self.source_error(e))?;
        self.fetched += bytes.len() as u64;
        Ok(bytes)
    }

    /// Appends bytes `range` of the original: copied server-side where S3's part rules allow
    /// (see the module documentation), fetched otherwise. Ranges that follow each other in the
    /// original (consecutive row groups) are copied as one.
    pub(crate) async fn copy(&mut self, range: Range<u64>) -> Result<(), LakeError> {
        match &mut self.pending {
            Some(pending) if pending.end == range.start => pending.end = range.end,
            _ => {
                if let Some(previous) = self.pending.replace(range) {
                    self.copy_now(previous).await?;
                }
            }
        }
        Ok(())
    }

    async fn copy_now(&mut self, mut range: Range<u64>) -> Result<(), LakeError> {
        let min = MIN_S3_PART_SIZE as u64;
        // A new file starts with the same 4 bytes as the original (`PAR1`, the Parquet
        // magic): a range right after them is copied from offset 0, magic included, rather
        // than fetched to top a 4-byte first part up to 5 MiB.
        if self.numbered == 0
            && range.start == PARQUET_MAGIC.len() as u64
            && self.buffer[..] == PARQUET_MAGIC
        {
            range.start = 0;
            self.buffer.clear();
        }
        let buffered = self.buffer.len() as u64;
        if buffered > 0 && buffered < min {
            let need = min - buffered;
            if range.end - range.start < need + min {
                let bytes = self.fetch(range).await?;
                return self.append(&bytes).await;
            }
            let top_up = self.fetch(range.start..range.start + need).await?;
            self.buffer.extend_from_slice(&top_up);
            range.start += need;
        }
        let len = range.end - range.start;
        if len < min {
            let bytes = self.fetch(range).await?;
            return self.append(&bytes).await;
        }
        if !self.buffer.is_empty() {
            self.upload_buffered(self.buffer.len()).await?;
        }
        // Split into equal parts of at most MAX_COPY_PART (each then holds well over 5 MiB).
        let count = len.div_ceil(MAX_COPY_PART);
        let each = len.div_ceil(count);
        let id = self.upload_id().await?;
        let mut start = range.start;
        while start < range.end {
            let end = (start + each).min(range.end);
            let number = self.next_number()?;
            self.collect(false).await?;
            let (s3, key, source, id) = (
                Arc::clone(&self.s3),
                self.key.clone(),
                self.source.clone(),
                id.clone(),
            );
            self.in_flight.spawn(async move {
                s3.upload_part_copy(
                    &key,
                    &id,
                    number,
                    &source.location,
                    start..end,
                    &source.e_tag,
                )
                .await
                .map_err(|e| source_error(&source, e))
            });
            self.server_side += end - start;
            start = end;
        }
        Ok(())
    }

    /// Uploads the last part and completes the upload; on failure, aborts it.
    ///
    /// # Errors
    /// Store errors; [`LakeError::Changed`] when a copy found the original changed.
    pub(crate) async fn finish(&mut self) -> Result<(), LakeError> {
        let result = async {
            if let Some(range) = self.pending.take() {
                self.copy_now(range).await?;
            }
            if !self.buffer.is_empty() || self.numbered == 0 {
                self.upload_buffered(self.buffer.len()).await?;
            }
            let id = self.upload_id().await?;
            self.collect(true).await?;
            self.parts.sort_by_key(|p| p.number);
            self.s3
                .complete(&self.key, &id, &self.parts)
                .await
                .map_err(|e| self.store_error(e))
        }
        .await;
        if result.is_err() {
            self.abort().await;
        }
        result
    }

    /// Aborts the upload (S3 drops its parts); a failure is logged, as it only leaves an
    /// incomplete upload for the bucket's lifecycle rule.
    pub(crate) async fn abort(&mut self) {
        // Parts still in flight could land after the abort: stop them first.
        self.in_flight.abort_all();
        while self.in_flight.join_next().await.is_some() {}
        if let Some(id) = self.upload_id.take()
            && let Err(e) = self.s3.abort(&self.key, &id).await
        {
            tracing::warn!(object = %self.key, error = %e, "aborting a multipart upload failed");
        }
    }
}

/// A failed condition on the original, or the original gone: it changed under us.
fn source_error(source: &CopySource, e: object_store::Error) -> LakeError {
    match e {
        object_store::Error::Precondition { .. } | object_store::Error::NotFound { .. } => {
            LakeError::Changed {
                file: source.relative.clone(),
            }
        }
        e => LakeError::store(&source.location, e),
    }
}
