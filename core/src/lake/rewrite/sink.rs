//! Where a rewrite's bytes go: object_store's upload (one PUT, or multipart above the part
//! size) or, on S3, a multipart upload whose untouched runs of row groups are copied
//! server-side; with the Hadoop checksum of the bytes when the original had a `.crc` sidecar.

use std::ops::Range;

use bytes::Bytes;
use object_store::PutPayload;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use tokio::io::AsyncWriteExt;

use super::crc::ChecksumWriter;
use super::part_copy::PartUpload;
use super::surgery::{Piece, bloom_block, blooms_between_row_groups, chunk_range};
use crate::lake::error::LakeError;
use crate::lake::store::MIN_S3_PART_SIZE;

/// Where the new file's bytes go.
pub(super) enum Upload {
    /// object_store's upload: one PUT, or a multipart upload above the part size.
    Buffered(BufWriter),
    /// A multipart upload with server-side copies of the original's untouched ranges (S3).
    Parts(PartUpload),
}

/// The upload of the new file, with its byte count and (optional) Hadoop checksum.
pub(super) struct Sink {
    pub(super) upload: Upload,
    /// Size in bytes above which the upload is multipart.
    pub(super) part_size: usize,
    /// The file's bytes while it is smaller than `part_size` (shared with the upload's buffer,
    /// not copied), for a conditional swap with one PUT; `None` for a multipart upload.
    pub(super) whole: Option<Vec<Bytes>>,
    pub(super) crc: Option<ChecksumWriter>,
    pub(super) written: u64,
}

/// A completed upload.
pub(super) struct Finished {
    /// Bytes written.
    pub(super) written: u64,
    /// The Hadoop sidecar's bytes, when the original had one.
    pub(super) sidecar: Option<Vec<u8>>,
    /// The file's bytes, when it was uploaded with one PUT.
    pub(super) whole: Option<PutPayload>,
    /// Whether it was uploaded in parts.
    pub(super) multipart: bool,
    /// Parts, when counted by the upload itself ([`Upload::Parts`]).
    pub(super) parts: Option<u64>,
    /// Bytes S3 copied from the original itself.
    pub(super) server_side: u64,
    /// Bytes of the original fetched by the upload.
    pub(super) fetched: u64,
}

impl Sink {
    pub(super) async fn put(&mut self, bytes: Vec<u8>) -> Result<(), object_store::Error> {
        if bytes.is_empty() {
            return Ok(());
        }
        if let Some(crc) = &mut self.crc {
            crc.update(&bytes);
        }
        self.written += bytes.len() as u64;
        let bytes = Bytes::from(bytes);
        if self.written >= self.part_size as u64 {
            self.whole = None;
        } else if let Some(whole) = &mut self.whole {
            whole.push(bytes.clone());
        }
        match &mut self.upload {
            Upload::Buffered(upload) => upload.put(bytes).await,
            Upload::Parts(_) => unreachable!("put_pieces writes to a part upload"),
        }
    }

    /// Writes `pieces`; ranges of the original only go to a [`Upload::Parts`].
    pub(super) async fn put_pieces(
        &mut self,
        pieces: Vec<Piece>,
        at: &Path,
    ) -> Result<(), LakeError> {
        for piece in pieces {
            match (&mut self.upload, piece) {
                (Upload::Buffered(_), Piece::Bytes(bytes)) => {
                    self.put(bytes).await.map_err(|e| LakeError::store(at, e))?
                }
                (Upload::Parts(parts), Piece::Bytes(bytes)) => {
                    self.written += bytes.len() as u64;
                    parts.put(&bytes).await?;
                }
                (Upload::Parts(parts), Piece::Source(range)) => {
                    self.written += range.end - range.start;
                    parts.copy(range).await?;
                }
                (Upload::Buffered(_), Piece::Source(range)) => {
                    return Err(LakeError::store(
                        at,
                        object_store::Error::NotSupported {
                            source: format!(
                                "bytes {}..{} of the original cannot be copied by this upload",
                                range.start, range.end
                            )
                            .into(),
                        },
                    ));
                }
            }
        }
        Ok(())
    }

    pub(super) async fn abort(&mut self) {
        match &mut self.upload {
            Upload::Buffered(upload) => {
                if let Err(e) = upload.abort().await {
                    tracing::warn!(error = %e, "aborting an upload failed");
                }
            }
            Upload::Parts(parts) => parts.abort().await,
        }
    }

    /// Completes the upload (a failed part upload is aborted).
    pub(super) async fn finish(self, at: &Path) -> Result<Finished, LakeError> {
        let (parts, server_side, fetched) = match self.upload {
            Upload::Buffered(mut upload) => {
                upload.shutdown().await.map_err(|e| {
                    LakeError::store(
                        at,
                        object_store::Error::Generic {
                            store: "upload",
                            source: Box::new(e),
                        },
                    )
                })?;
                (None, 0, 0)
            }
            Upload::Parts(mut upload) => {
                upload.finish().await?;
                (Some(upload.parts()), upload.server_side, upload.fetched)
            }
        };
        Ok(Finished {
            written: self.written,
            sidecar: self.crc.map(ChecksumWriter::finish),
            multipart: self.whole.is_none(),
            whole: self.whole.map(PutPayload::from_iter),
            parts,
            server_side,
            fetched,
        })
    }
}

/// The untouched row groups to copy without fetching them (S3 server-side copies): runs of
/// consecutive row groups not in `touched` (those with a plan) whose column chunks follow each other in `md`'s
/// file (`file_len` bytes) with nothing in between, and that the new file therefore holds
/// as one byte range of the original, of at least [`MIN_S3_PART_SIZE`] (5 MiB). The new file
/// holds its bloom filters where the original does: after the last row group (parquet-mr,
/// Arrow C++), where they do not split a run, or after each row group (the parquet crate's
/// default), where a row group's block of filters ([`bloom_block`]) right after its column
/// chunks is part of its range. Shorter runs are fetched and copied through the worker, as
/// off S3.
pub(super) fn server_side_runs(
    md: &parquet::file::metadata::ParquetMetaData,
    touched: &std::collections::BTreeSet<usize>,
    file_len: u64,
) -> std::collections::BTreeSet<usize> {
    /// The byte range of a row group's column chunks, when they are contiguous in order.
    pub(super) fn span(
        rg: &parquet::file::metadata::RowGroupMetaData,
        file_len: u64,
    ) -> Option<Range<u64>> {
        let mut span: Option<Range<u64>> = None;
        for col in rg.columns() {
            let r = chunk_range(col, file_len).ok()?;
            span = match span {
                None => Some(r),
                Some(s) if s.end == r.start => Some(s.start..r.end),
                Some(_) => return None,
            };
        }
        span
    }
    let blooms_between = blooms_between_row_groups(md);
    let extent = |rg: &parquet::file::metadata::RowGroupMetaData| {
        let s = span(rg, file_len)?;
        match bloom_block(rg) {
            Some(b) if blooms_between && b.start == s.end && b.end <= file_len => {
                Some(s.start..b.end)
            }
            _ => Some(s),
        }
    };
    let mut chosen = std::collections::BTreeSet::new();
    let mut run: Vec<usize> = Vec::new();
    let mut run_span: Option<Range<u64>> = None;
    let mut close = |run: &mut Vec<usize>, run_span: &mut Option<Range<u64>>| {
        if run_span
            .as_ref()
            .is_some_and(|s| s.end - s.start >= MIN_S3_PART_SIZE as u64)
        {
            chosen.extend(run.iter().copied());
        }
        run.clear();
        *run_span = None;
    };
    for rg in 0..md.num_row_groups() {
        let meta = md.row_group(rg);
        let this = (!touched.contains(&rg)).then(|| extent(meta)).flatten();
        match (this, &mut run_span) {
            (Some(s), Some(current)) if current.end == s.start => {
                current.end = s.end;
                run.push(rg);
            }
            (Some(s), _) => {
                close(&mut run, &mut run_span);
                run.push(rg);
                run_span = Some(s);
            }
            (None, _) => close(&mut run, &mut run_span),
        }
    }
    close(&mut run, &mut run_span);
    chosen
}
