//! The copy-on-write engine: rewrite one Parquet file through a [`RowFilter`].
//!
//! Steps: open the footer → locate the filter's subjects (statistics, bloom filters, subject
//! column) → nothing found: return `Unchanged` without writing → load the page index → stream
//! row group by row group (one row group in flight; each input row group becomes exactly one
//! output row group) into a hidden temporary object beside the file: a row group without
//! affected rows is copied as encoded bytes, an affected one is filtered at Parquet's physical
//! level ([`super::surgery`]) → verify the new footer → ask the [`CommitGuard`] → check the
//! original did not change meanwhile → swap the new file in (see [`swap`]) → rewrite the
//! Hadoop `.crc` sidecar if there is one. Any error leaves the original untouched and deletes the temporary objects; a crash
//! leaves at most a temporary object, removed by the next attempt ([`remove_stale_temps`]).
//!
//! The upload streams: a new file smaller than the root's part size (10 MiB by default) goes
//! out with one PUT, a larger one as a multipart upload of parts of that size, so memory stays
//! bound to one row group plus the parts in flight.
//!
//! On S3 ([`StoreKind::S3`] with a [`S3Client`](crate::lake::s3::S3Client)), runs of untouched
//! row groups that the new file holds as one byte range of the original of at least
//! [`MIN_S3_PART_SIZE`] (5 MiB, see [`server_side_runs`]) are not fetched: the surgeon writes
//! their footer entries from the original's metadata ([`Surgeon::copy_unfetched`]) and
//! [`PartUpload`] copies their bytes server-side (`UploadPartCopy`, conditional on the listed
//! ETag; a changed original fails the file with [`LakeError::Changed`]). Not when the file has
//! a Hadoop `.crc` sidecar: its checksums need every byte, so such files take the path above.
//! Every error aborts the multipart upload before the temporary object is deleted.
//!
//! Concurrency: I/O (fetching a row group's column chunks, uploading output) stays on the async
//! runtime; decoding, filtering and encoding (or copying) a row group is CPU-bound and runs on
//! the blocking pool ([`run_blocking`]), the writer being moved in and out for each row group. That keeps the
//! memory bound to one row group per file and keeps the runtime's workers responsive.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{
    ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion,
};
use tokio::io::AsyncWriteExt;

use super::crc::{ChecksumWriter, bytes_per_checksum, sidecar_name};
use super::failpoint::{Failpoint, hit};
use super::part_copy::{CopySource, PartUpload};
use super::surgery::{
    Piece, RowGroupPlan, Surgeon, SurgeryMetrics, chunk_range, fetch_row_group, key_value_metadata,
    load_page_index, plan_candidates,
};
use super::{CommitGuard, FileOutcome, FileStatus, RowFilter};
use crate::lake::error::LakeError;
use crate::lake::locate::candidate_row_groups;
use crate::lake::open::{OpenFile, open};
pub(crate) use crate::lake::root::TEMP_MARKER;
use crate::lake::root::{DataFile, LakeRoot};
use crate::lake::run_blocking;
use crate::lake::store::{MIN_S3_PART_SIZE, StoreKind};

/// A hidden sibling of `location` for a temporary object: `<dir>/.<name>.lethe-tmp-<uuid>`.
fn temp_beside(location: &Path) -> Path {
    let name = location.filename().unwrap_or("file");
    let tmp = format!(".{name}{TEMP_MARKER}{}", uuid::Uuid::new_v4());
    match location.parent() {
        Some(dir) => dir.join(tmp.as_str()),
        None => Path::from(tmp),
    }
}

/// The location of the Hadoop sidecar of `location`.
fn sidecar_of(location: &Path) -> Path {
    let name = sidecar_name(location.filename().unwrap_or("file"));
    match location.parent() {
        Some(dir) => dir.join(name.as_str()),
        None => Path::from(name),
    }
}

/// True when `temp` (a listed temporary object) belongs to `file`: it is `.<name>.lethe-tmp-<uuid>`
/// (the data file) or `..<name>.crc.lethe-tmp-<uuid>` (its Hadoop sidecar), in the same folder.
pub(crate) fn is_temp_of(temp: &Path, file: &Path) -> bool {
    let (Some(temp_name), Some(name)) = (temp.filename(), file.filename()) else {
        return false;
    };
    if temp.parent() != file.parent() {
        return false;
    }
    [
        format!(".{name}{TEMP_MARKER}"),
        format!("..{name}.crc{TEMP_MARKER}"),
    ]
    .iter()
    .any(|prefix| {
        temp_name
            .strip_prefix(prefix.as_str())
            .is_some_and(|rest| uuid::Uuid::parse_str(rest).is_ok())
    })
}

/// Deletes the temporary objects of `file` among `temps` that are older than `attempt_started`:
/// they were left by an attempt that crashed (or was killed) before cleaning up. Returns how
/// many were deleted. Failures are logged, not returned: a leftover only costs storage.
///
/// Objects of an attempt still running elsewhere are younger than this attempt unless its
/// worker lost its lease, in which case deleting its temporary object makes its swap fail,
/// which is what the lease asks for. Clock skew between the store and this host (S3 stamps
/// `last_modified` itself) shifts the cut-off by the skew.
pub(crate) async fn remove_stale_temps(
    store: &Arc<dyn ObjectStore>,
    file: &DataFile,
    temps: &[ObjectMeta],
    attempt_started: DateTime<Utc>,
) -> u64 {
    let mut removed = 0;
    for temp in temps
        .iter()
        .filter(|t| is_temp_of(&t.location, &file.location) && t.last_modified < attempt_started)
    {
        match store.delete(&temp.location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                tracing::info!(file = %file.relative, object = %temp.location, "stale temporary object removed");
                removed += 1;
            }
            Err(e) => {
                tracing::warn!(object = %temp.location, error = %e, "stale temporary object not removed")
            }
        }
    }
    removed
}

/// On a local file system, an upload killed mid-way leaves object_store's staging file
/// `<temporary object>#<n>` behind, which no listing shows: deletes those of `file` older
/// than `attempt_started`. Returns how many were deleted; failures are logged.
pub(crate) fn remove_stale_staging(
    root: &LakeRoot,
    file: &DataFile,
    attempt_started: DateTime<Utc>,
) -> u64 {
    if root.kind() != StoreKind::Local {
        return 0;
    }
    let Some(folder) = crate::lake::local_folder(root.url()) else {
        return 0;
    };
    let mut dir = std::path::PathBuf::from(folder);
    if let Some(parent) = file.location.parent() {
        dir.extend(parent.parts().map(|p| p.as_ref().to_string()));
    }
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return 0;
    };
    let cutoff = std::time::SystemTime::from(attempt_started);
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let Some((temp, n)) = name.rsplit_once('#') else {
            continue;
        };
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let temp_path = file
            .location
            .parent()
            .map_or_else(|| Path::from(temp), |p| p.join(temp));
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|m| m < cutoff);
        if is_temp_of(&temp_path, &file.location) && old {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => {
                    tracing::info!(file = %file.relative, object = %name, "stale upload staging file removed");
                    removed += 1;
                }
                Err(e) => {
                    tracing::warn!(object = %name, error = %e, "stale staging file not removed")
                }
            }
        }
    }
    removed
}

/// Rewrites `file` without the rows `filter` drops; `guard` (if any) is asked right before the
/// swap. See the module documentation.
///
/// # Errors
/// Any [`LakeError`] about this file ([`LakeError::Fenced`] when the guard refused); the
/// original is then untouched and no temporary object remains.
pub(crate) async fn rewrite_file(
    root: &LakeRoot,
    file: &DataFile,
    filter: &Arc<dyn RowFilter>,
    guard: Option<&Arc<dyn CommitGuard>>,
) -> Result<FileOutcome, LakeError> {
    rewrite_file_to(root, file, filter, guard, Destination::Swap)
        .await
        .map(|(outcome, _)| outcome)
}

/// Where [`rewrite_file_to`] puts the verified new file.
#[derive(Debug, Clone)]
pub(crate) enum Destination {
    /// In place of the original: written to a hidden temporary object, then swapped in
    /// (Hive-partitioned folders, where the folder listing is the table).
    Swap,
    /// A new object at this location beside the original, which stays as it is (table
    /// formats: the new file counts only once the table's log commits it, so no swap, no
    /// temporary object, no `.crc` sidecar). A file losing every row is not written.
    Beside(Path),
}

/// The new file [`rewrite_file_to`] wrote to a [`Destination::Beside`] location, verified.
#[derive(Debug, Clone)]
pub(crate) struct NewFile {
    /// Where it was written.
    pub location: Path,
    /// Size in bytes.
    pub size: u64,
    /// Its footer, as read back for the verification (row count, statistics).
    pub metadata: Arc<parquet::file::metadata::ParquetMetaData>,
    /// Its Arrow schema.
    pub schema: arrow_schema::SchemaRef,
}

/// [`rewrite_file`] to a chosen [`Destination`]. With [`Destination::Beside`], returns the new
/// file, or `None` when the filter removes every row of `file` (nothing written) or none
/// (`FileStatus::Unchanged`).
///
/// # Errors
/// As [`rewrite_file`]; with [`Destination::Beside`] a failed attempt deletes what it wrote at
/// the new location.
pub(crate) async fn rewrite_file_to(
    root: &LakeRoot,
    file: &DataFile,
    filter: &Arc<dyn RowFilter>,
    guard: Option<&Arc<dyn CommitGuard>>,
    destination: Destination,
) -> Result<(FileOutcome, Option<NewFile>), LakeError> {
    let store = root.store();
    let opened = open(store, &file.location, &file.relative, file.size).await?;
    let rows_before = opened.num_rows();
    let candidates = candidate_row_groups(&opened, filter.columns(), filter.subjects()).await?;
    let plans = plan_candidates(&opened, filter, &candidates).await?;
    if plans.is_empty() {
        tracing::debug!(file = %file.relative, "no subject rows; file left as is");
        return Ok((
            FileOutcome {
                relative: file.relative.clone(),
                status: FileStatus::Unchanged,
                rows_before,
                rows_removed: 0,
                bytes_read: opened.reader.bytes_read(),
                bytes_written: 0,
                upload_parts: 0,
                stale_temps_removed: 0,
                surgery: SurgeryMetrics::default(),
                retryable: false,
            },
            None,
        ));
    }
    let removes_everything = plans.values().map(|p| p.removed).sum::<u64>() == rows_before;
    if removes_everything && matches!(destination, Destination::Beside(_)) {
        let removed = plans.values().map(|p| p.removed).sum();
        tracing::info!(file = %file.relative, rows_removed = removed, "every row removed; no new file");
        return Ok((
            FileOutcome {
                relative: file.relative.clone(),
                status: FileStatus::Rewritten,
                rows_before,
                rows_removed: removed,
                bytes_read: opened.reader.bytes_read(),
                bytes_written: 0,
                upload_parts: 0,
                stale_temps_removed: 0,
                surgery: SurgeryMetrics::default(),
                retryable: false,
            },
            None,
        ));
    }
    let tmp = match &destination {
        Destination::Swap => temp_beside(&file.location),
        Destination::Beside(at) => at.clone(),
    };
    let sidecar = sidecar_of(&file.location);
    let sidecar_tmp = temp_beside(&sidecar);
    let result = write_verify_swap(
        root,
        file,
        &opened,
        guard,
        plans,
        Temps {
            data: &tmp,
            sidecar: &sidecar,
            sidecar_tmp: &sidecar_tmp,
            swap: matches!(destination, Destination::Swap),
        },
    )
    .await;
    if result.is_err() {
        for leftover in [&tmp, &sidecar_tmp] {
            match store.delete(leftover).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => {
                    tracing::error!(object = %leftover, error = %e, "temporary object not removed")
                }
            }
        }
    }
    let written = result?;
    tracing::info!(
        file = %file.relative,
        rows_removed = written.rows_removed,
        bytes_written = written.bytes,
        upload_parts = written.parts,
        "file rewritten"
    );
    hit(Failpoint::AfterSwap).await;
    let new_file = match destination {
        Destination::Swap => None,
        Destination::Beside(location) => Some(NewFile {
            location,
            size: written.bytes,
            metadata: Arc::clone(written.new.metadata.metadata()),
            schema: Arc::clone(written.new.metadata.schema()),
        }),
    };
    Ok((
        FileOutcome {
            relative: file.relative.clone(),
            status: FileStatus::Rewritten,
            rows_before,
            rows_removed: written.rows_removed,
            bytes_read: opened.reader.bytes_read() + written.fetched,
            bytes_written: written.bytes,
            upload_parts: written.parts,
            stale_temps_removed: 0,
            surgery: written.surgery,
            retryable: false,
        },
        new_file,
    ))
}

struct Temps<'a> {
    data: &'a Path,
    sidecar: &'a Path,
    sidecar_tmp: &'a Path,
    /// Swap `data` in place of the original (else `data` is the new file's final location).
    swap: bool,
}

/// What [`write_verify_swap`] wrote.
struct Written {
    rows_removed: u64,
    /// Size of the new file in bytes.
    bytes: u64,
    /// Parts of its multipart upload (0: one PUT).
    parts: u64,
    /// Bytes of the original fetched by the upload to form parts (see [`PartUpload`]).
    fetched: u64,
    /// Row groups copied and rewritten.
    surgery: SurgeryMetrics,
    /// The new file, opened for the verification.
    new: OpenFile,
}

/// Writes the filtered copy to `temps.data`, verifies it, asks `guard` and swaps it in.
#[allow(clippy::too_many_arguments)]
async fn write_verify_swap(
    root: &LakeRoot,
    file: &DataFile,
    opened: &OpenFile,
    guard: Option<&Arc<dyn CommitGuard>>,
    mut plans: BTreeMap<usize, RowGroupPlan>,
    temps: Temps<'_>,
) -> Result<Written, LakeError> {
    let store = root.store();
    let relative = file.relative.as_str();
    let crc = match store.head(temps.sidecar).await {
        Ok(_) if temps.swap => {
            let header = store
                .get_range(temps.sidecar, 0..8)
                .await
                .map_err(|e| LakeError::store(temps.sidecar, e))?;
            Some(ChecksumWriter::new(bytes_per_checksum(&header)))
        }
        Ok(_) | Err(object_store::Error::NotFound { .. }) => None,
        Err(e) => return Err(LakeError::store(temps.sidecar, e)),
    };

    let md = load_page_index(opened).await?;
    let reference = plans.keys().next().copied().unwrap_or(0);
    let mut surgeon = Surgeon::new(relative, &md, reference)?;

    let part_size = root.upload_part_size();
    // On S3, long runs of untouched row groups are copied server-side (not with a `.crc`
    // sidecar, whose checksums need every byte).
    let copier = match (root.kind(), root.s3(), &file.e_tag, &crc) {
        (StoreKind::S3, Some(s3), Some(e_tag), None) => Some((s3, e_tag)),
        _ => None,
    };
    let unfetched = match copier {
        Some(_) => {
            let touched = plans.keys().copied().collect();
            server_side_runs(&md, &touched, opened.reader.len())
        }
        None => std::collections::BTreeSet::new(),
    };
    let upload = match copier {
        Some((s3, e_tag)) if !unfetched.is_empty() => Upload::Parts(PartUpload::new(
            Arc::clone(s3),
            Arc::clone(store),
            temps.data.clone(),
            CopySource {
                location: file.location.clone(),
                relative: relative.to_string(),
                e_tag: e_tag.clone(),
            },
            part_size,
        )),
        _ => Upload::Buffered(BufWriter::with_capacity(
            Arc::clone(store),
            temps.data.clone(),
            part_size,
        )),
    };
    let mut sink = Sink {
        whole: matches!(upload, Upload::Buffered(_)).then(Vec::new),
        upload,
        part_size,
        crc,
        written: 0,
    };
    let mut removed = 0u64;
    for rg in 0..md.num_row_groups() {
        let step = async {
            let plan = plans.remove(&rg);
            if unfetched.contains(&rg) {
                let source = fetch_row_group(opened, &md, rg, Some(&[]), true).await?;
                return run_blocking(move || {
                    let pieces = surgeon.copy_unfetched(&source)?;
                    Ok::<_, LakeError>((surgeon, 0, pieces))
                })
                .await?;
            }
            let source = fetch_row_group(opened, &md, rg, None, plan.is_none()).await?;
            run_blocking(move || {
                let (bytes, n) = match plan {
                    Some(plan) if plan.removes_all() => {
                        surgeon.drop_row_group(&source);
                        (Vec::new(), plan.removed)
                    }
                    Some(plan) => (surgeon.filter(&source, &plan)?, plan.removed),
                    None => (surgeon.copy(&source)?, 0),
                };
                Ok::<_, LakeError>((surgeon, n, vec![Piece::Bytes(bytes)]))
            })
            .await?
        };
        let (s, n, pieces) = match step.await {
            Ok(done) => done,
            Err(e) => {
                sink.abort().await;
                return Err(e);
            }
        };
        surgeon = s;
        removed += n;
        if let Err(e) = sink.put_pieces(pieces, temps.data).await {
            sink.abort().await;
            return Err(e);
        }
        if rg == 0 {
            hit(Failpoint::MidWrite).await;
        }
    }
    let mut surgery = surgeon.metrics;
    let tail = match run_blocking(move || surgeon.finish()).await? {
        Ok(tail) => tail,
        Err(e) => {
            sink.abort().await;
            return Err(e);
        }
    };
    if let Err(e) = sink.put_pieces(vec![Piece::Bytes(tail)], temps.data).await {
        sink.abort().await;
        return Err(e);
    }
    let finished = sink.finish(temps.data).await?;
    surgery.bytes_copied_server_side = finished.server_side;

    let new = verify(store, opened, temps.data, finished.written, removed).await?;
    if let Some(guard) = guard {
        guard
            .may_commit(relative)
            .await
            .map_err(|reason| LakeError::Fenced {
                file: relative.to_string(),
                reason,
            })?;
    }
    let parts = match finished.parts {
        Some(parts) => parts,
        None if finished.multipart => finished.written.div_ceil(part_size as u64),
        None => 0,
    };
    if !temps.swap {
        return Ok(Written {
            rows_removed: removed,
            bytes: finished.written,
            parts,
            fetched: finished.fetched,
            surgery,
            new,
        });
    }
    if let Some(sidecar_bytes) = &finished.sidecar {
        store
            .put(temps.sidecar_tmp, PutPayload::from(sidecar_bytes.clone()))
            .await
            .map_err(|e| LakeError::store(temps.sidecar_tmp, e))?;
    }
    ensure_unchanged(store, file).await?;
    hit(Failpoint::BeforeSwap).await;
    swap(root, file, temps.data, finished.whole).await?;
    if finished.sidecar.is_some() {
        store
            .rename(temps.sidecar_tmp, temps.sidecar)
            .await
            .map_err(|e| LakeError::store(temps.sidecar, e))?;
    }
    Ok(Written {
        rows_removed: removed,
        bytes: finished.written,
        parts,
        fetched: finished.fetched,
        surgery,
        new,
    })
}

/// Replaces `file` by the verified temporary object `tmp` (`whole`: its bytes, when it was
/// small enough to be uploaded with one PUT).
///
/// - Local file system: `rename(2)`, atomic.
/// - S3 (and the in-memory store), file uploaded with one PUT: a conditional PUT of the same
///   bytes over the original, `If-Match: <the original's ETag as listed>` (object_store
///   `PutMode::Update`), then the temporary object is deleted. A write to the original by anyone
///   since the listing makes the PUT fail with `412 Precondition Failed` →
///   [`LakeError::Changed`]: no window.
/// - S3, multipart upload (larger than the part size): object_store 0.14 has no conditional
///   form of `CopyObject` or of completing a multipart upload over an existing object, so the
///   swap is a server-side copy of the temporary object over the original, then a delete of the
///   temporary object. [`ensure_unchanged`] ran just before; **a write to the original between
///   that HEAD and the end of the copy (one round trip plus the copy, about a second per GB) is
///   lost.** Producers append new files rather than rewrite old ones, and Lethe's own writers
///   are fenced by the [`CommitGuard`], so only a foreign rewrite (a compaction outside Lethe)
///   can hit this window.
/// - A store from [`LakeRoot::from_store`]: its `rename`, after the same check.
///
/// A new file whose untouched row groups were copied server-side ([`PartUpload`]) is always a
/// multipart upload (at least 5 MiB), so it takes the copy-then-delete swap.
///
/// A crash between the copy and the delete leaves the temporary object; the next attempt on
/// the file removes it ([`remove_stale_temps`]). A crash during a multipart upload leaves an
/// incomplete upload that no listing shows ([`LakeRoot::incomplete_uploads`] does): S3 buckets holding lakes should have a lifecycle
/// rule `AbortIncompleteMultipartUpload` (e.g. after 1 day). Files above 5 GiB cannot be
/// swapped on S3 (the limit of one `CopyObject`): they fail and stay untouched.
pub(crate) async fn swap(
    root: &LakeRoot,
    file: &DataFile,
    tmp: &Path,
    whole: Option<PutPayload>,
) -> Result<(), LakeError> {
    let store = root.store();
    let kind = root.kind();
    if matches!(kind, StoreKind::S3 | StoreKind::Memory)
        && let (Some(payload), Some(e_tag)) = (whole, file.e_tag.clone())
    {
        let opts = PutOptions {
            mode: PutMode::Update(UpdateVersion {
                e_tag: Some(e_tag),
                version: None,
            }),
            ..PutOptions::default()
        };
        match store.put_opts(&file.location, payload, opts).await {
            Ok(_) => {
                remove_after_swap(store, tmp).await;
                return Ok(());
            }
            Err(
                object_store::Error::Precondition { .. } | object_store::Error::NotFound { .. },
            ) => {
                return Err(LakeError::Changed {
                    file: file.relative.clone(),
                });
            }
            Err(
                object_store::Error::NotImplemented { .. }
                | object_store::Error::NotSupported { .. },
            ) => {
                tracing::debug!(file = %file.relative, "conditional put not available; renaming");
            }
            Err(e) => return Err(LakeError::store(&file.location, e)),
        }
    }
    match kind {
        StoreKind::S3 | StoreKind::Memory => {
            store
                .copy(tmp, &file.location)
                .await
                .map_err(|e| LakeError::store(&file.location, e))?;
            remove_after_swap(store, tmp).await;
        }
        StoreKind::Local | StoreKind::Other => store
            .rename(tmp, &file.location)
            .await
            .map_err(|e| LakeError::store(&file.location, e))?,
    }
    Ok(())
}

/// Deletes the temporary object after a swap by copy; a failure only leaves a stale temporary
/// object, so it is logged, not returned.
async fn remove_after_swap(store: &Arc<dyn ObjectStore>, tmp: &Path) {
    if let Err(e) = store.delete(tmp).await {
        tracing::warn!(object = %tmp, error = %e, "temporary object not removed after the swap");
    }
}

/// Where the new file's bytes go.
enum Upload {
    /// object_store's upload: one PUT, or a multipart upload above the part size.
    Buffered(BufWriter),
    /// A multipart upload with server-side copies of the original's untouched ranges (S3).
    Parts(PartUpload),
}

/// The upload of the new file, with its byte count and (optional) Hadoop checksum.
struct Sink {
    upload: Upload,
    /// Size in bytes above which the upload is multipart.
    part_size: usize,
    /// The file's bytes while it is smaller than `part_size` (shared with the upload's buffer,
    /// not copied), for a conditional swap with one PUT; `None` for a multipart upload.
    whole: Option<Vec<Bytes>>,
    crc: Option<ChecksumWriter>,
    written: u64,
}

/// A completed upload.
struct Finished {
    /// Bytes written.
    written: u64,
    /// The Hadoop sidecar's bytes, when the original had one.
    sidecar: Option<Vec<u8>>,
    /// The file's bytes, when it was uploaded with one PUT.
    whole: Option<PutPayload>,
    /// Whether it was uploaded in parts.
    multipart: bool,
    /// Parts, when counted by the upload itself ([`Upload::Parts`]).
    parts: Option<u64>,
    /// Bytes S3 copied from the original itself.
    server_side: u64,
    /// Bytes of the original fetched by the upload.
    fetched: u64,
}

impl Sink {
    async fn put(&mut self, bytes: Vec<u8>) -> Result<(), object_store::Error> {
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
    async fn put_pieces(&mut self, pieces: Vec<Piece>, at: &Path) -> Result<(), LakeError> {
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

    async fn abort(&mut self) {
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
    async fn finish(self, at: &Path) -> Result<Finished, LakeError> {
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
/// as one byte range of the original, of at least [`MIN_S3_PART_SIZE`] (5 MiB). A row group
/// with a bloom filter ends its run (the new file holds its bloom filters right after it).
/// Shorter runs are fetched and copied through the worker, as off S3.
fn server_side_runs(
    md: &parquet::file::metadata::ParquetMetaData,
    touched: &std::collections::BTreeSet<usize>,
    file_len: u64,
) -> std::collections::BTreeSet<usize> {
    /// The byte range of a row group's column chunks, when they are contiguous in order.
    fn span(rg: &parquet::file::metadata::RowGroupMetaData, file_len: u64) -> Option<Range<u64>> {
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
    let mut chosen = std::collections::BTreeSet::new();
    let mut run: Vec<usize> = Vec::new();
    let mut run_span: Option<Range<u64>> = None;
    let mut open = false;
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
        let this = (!touched.contains(&rg))
            .then(|| span(meta, file_len))
            .flatten();
        match (this, &mut run_span) {
            (Some(s), Some(current)) if open && current.end == s.start => {
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
        open = !meta
            .columns()
            .iter()
            .any(|c| c.bloom_filter_offset().is_some());
    }
    close(&mut run, &mut run_span);
    chosen
}

/// Reads the new file's footer back: it must decode, hold `old − removed` rows (counted by
/// row group, not by the original's file-level count, which some writers get wrong) and have
/// the original Parquet schema and key-value metadata (plus the original `created_by`).
/// Returns the new file, opened.
async fn verify(
    store: &Arc<dyn ObjectStore>,
    original: &OpenFile,
    tmp: &Path,
    size: u64,
    removed: u64,
) -> Result<OpenFile, LakeError> {
    let relative = &original.relative;
    let new = open(store, tmp, relative, size).await?;
    let expected_rows = original.num_rows().saturating_sub(removed);
    if new.num_rows() != expected_rows {
        return Err(LakeError::Verify {
            file: relative.clone(),
            expected_rows,
            actual_rows: new.num_rows(),
        });
    }
    if new.parquet_schema().root_schema() != original.parquet_schema().root_schema() {
        return Err(LakeError::Unsupported {
            file: relative.clone(),
            reason: "the rewritten file's Parquet schema differs from the original".into(),
        });
    }
    let expected_kv = key_value_metadata(original.metadata.metadata());
    let new_kv = new
        .metadata
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .cloned();
    if new_kv != expected_kv {
        return Err(LakeError::Unsupported {
            file: relative.clone(),
            reason: "the rewritten file's key-value metadata differs from the original".into(),
        });
    }
    Ok(new)
}

/// Fails when the original changed (size, ETag or mtime) since it was listed: someone else
/// wrote it, and swapping in our copy would lose their write.
async fn ensure_unchanged(store: &Arc<dyn ObjectStore>, file: &DataFile) -> Result<(), LakeError> {
    let now = store
        .head(&file.location)
        .await
        .map_err(|e| LakeError::store(&file.location, e))?;
    if now.size != file.size || now.e_tag != file.e_tag || now.last_modified != file.last_modified {
        return Err(LakeError::Changed {
            file: file.relative.clone(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use arrow_array::{ArrayRef, BinaryArray, RecordBatch};
    use arrow_schema::{DataType, Field, Schema};
    use parquet::arrow::ArrowWriter;
    use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
    use parquet::file::properties::WriterProperties;

    use super::server_side_runs;

    /// Four row groups of 2 MiB (32 rows of 64 KiB, no dictionary), with or without bloom
    /// filters; returns the footer and the file's size.
    fn four_row_groups(blooms: bool) -> (ParquetMetaData, u64) {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "payload",
            DataType::Binary,
            false,
        )]));
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(32))
            .set_dictionary_enabled(false)
            .set_bloom_filter_enabled(blooms)
            .build();
        let mut out = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut out, Arc::clone(&schema), Some(props)).unwrap();
        for rg in 0..4u8 {
            let values: Vec<Vec<u8>> = (0..32u8).map(|i| vec![rg ^ i; 64 * 1024]).collect();
            let column: ArrayRef = Arc::new(BinaryArray::from_iter_values(values.iter()));
            let batch = RecordBatch::try_new(Arc::clone(&schema), vec![column]).unwrap();
            writer.write(&batch).unwrap();
            writer.flush().unwrap();
        }
        writer.close().unwrap();
        let len = out.len() as u64;
        let md = ParquetMetaDataReader::new()
            .parse_and_finish(&bytes::Bytes::from(out))
            .unwrap();
        assert_eq!(md.num_row_groups(), 4);
        (md, len)
    }

    fn set(items: &[usize]) -> BTreeSet<usize> {
        items.iter().copied().collect()
    }

    #[test]
    fn only_runs_of_untouched_row_groups_of_5_mib_are_copied_server_side() {
        let (md, len) = four_row_groups(false);
        assert_eq!(server_side_runs(&md, &set(&[]), len), set(&[0, 1, 2, 3]));
        assert_eq!(server_side_runs(&md, &set(&[0]), len), set(&[1, 2, 3]));
        assert_eq!(server_side_runs(&md, &set(&[3]), len), set(&[0, 1, 2]));
        // 2 MiB and 4 MiB on either side of the touched row group: too short.
        assert_eq!(server_side_runs(&md, &set(&[1]), len), set(&[]));
        assert_eq!(server_side_runs(&md, &set(&[0, 3]), len), set(&[]));
    }

    #[test]
    fn a_bloom_filter_between_row_groups_ends_a_run() {
        let (md, len) = four_row_groups(true);
        assert!(md.row_group(0).column(0).bloom_filter_offset().is_some());
        assert_eq!(server_side_runs(&md, &set(&[]), len), set(&[]));
    }
}
