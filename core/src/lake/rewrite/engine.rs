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
use std::sync::Arc;

use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::crc::{ChecksumWriter, bytes_per_checksum};
use super::failpoint::{Failpoint, hit};
use super::part_copy::{CopySource, PartUpload};
use super::surgery::{
    Piece, RowGroupPlan, Surgeon, SurgeryMetrics, fetch_row_group, key_value_metadata,
    load_page_index, plan_candidates,
};
use super::{CommitGuard, DeletedRows, FileOutcome, FileStatus, RowFilter};
use crate::lake::error::LakeError;
use crate::lake::locate::candidate_row_groups;
use crate::lake::open::{OpenFile, open};
use crate::lake::root::{DataFile, LakeRoot};
use crate::lake::run_blocking;
use crate::lake::store::StoreKind;

use super::sink::{Sink, Upload, server_side_runs};
use super::swap::ensure_unchanged;
pub(crate) use super::swap::swap;
#[cfg(test)]
pub(crate) use super::temps::is_temp_of;
pub(crate) use super::temps::{remove_stale_staging, remove_stale_temps};
use super::temps::{sidecar_of, temp_beside};
#[cfg(test)]
pub(crate) use crate::lake::root::TEMP_MARKER;

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
    /// A new object at `at` beside the original, which stays as it is (table formats: the
    /// new file counts only once the table's log commits it, so no swap, no temporary
    /// object, no `.crc` sidecar). A file losing every row is not written. The rows of
    /// `deleted` (the table's deletion vector or position deletes of the original) are left
    /// out of the new file too; they do not make a file without subject rows rewritten.
    Beside {
        /// Where the new file goes.
        at: Path,
        /// Rows of the original the table has already deleted.
        deleted: Arc<DeletedRows>,
    },
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
    let mut plans = plan_candidates(&opened, filter, &candidates).await?;
    if plans.is_empty() {
        tracing::debug!(file = %file.relative, "no subject rows; file left as is");
        return Ok((
            FileOutcome {
                rows_before,
                bytes_read: opened.reader.bytes_read(),
                ..FileOutcome::of(file.relative.clone(), FileStatus::Unchanged)
            },
            None,
        ));
    }
    let already_deleted = match &destination {
        Destination::Beside { deleted, .. } => remove_deleted(&opened, &mut plans, deleted)?,
        Destination::Swap => 0,
    };
    let removes_everything = plans.values().map(|p| p.removed).sum::<u64>() == rows_before;
    if removes_everything && matches!(destination, Destination::Beside { .. }) {
        let removed: u64 = plans.values().map(|p| p.removed).sum();
        tracing::info!(file = %file.relative, rows_removed = removed, "every row removed; no new file");
        return Ok((
            FileOutcome {
                rows_before,
                rows_removed: removed - already_deleted,
                rows_already_deleted: already_deleted,
                bytes_read: opened.reader.bytes_read(),
                ..FileOutcome::of(file.relative.clone(), FileStatus::Rewritten)
            },
            None,
        ));
    }
    if let Some(reason) = &opened.rewrite_refusal {
        return Err(LakeError::Unsupported {
            file: file.relative.clone(),
            reason: reason.clone(),
        });
    }
    let tmp = match &destination {
        Destination::Swap => temp_beside(&file.location),
        Destination::Beside { at, .. } => at.clone(),
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
        Destination::Beside { at: location, .. } => Some(NewFile {
            location,
            size: written.bytes,
            metadata: Arc::clone(written.new.metadata.metadata()),
            schema: Arc::clone(written.new.metadata.schema()),
        }),
    };
    Ok((
        FileOutcome {
            rows_before,
            rows_removed: written.rows_removed - already_deleted,
            rows_already_deleted: already_deleted,
            bytes_read: opened.reader.bytes_read() + written.fetched,
            bytes_written: written.bytes,
            upload_parts: written.parts,
            surgery: written.surgery,
            ..FileOutcome::of(file.relative.clone(), FileStatus::Rewritten)
        },
        new_file,
    ))
}

/// Adds the rows of `deleted` to `plans` (a plan is made for a row group that had none);
/// returns how many rows this removes besides those the filter removed.
///
/// # Errors
/// [`LakeError::Corrupt`] when a deleted position is past the end of the file (the deletes
/// were not written for this file).
fn remove_deleted(
    opened: &OpenFile,
    plans: &mut BTreeMap<usize, RowGroupPlan>,
    deleted: &DeletedRows,
) -> Result<u64, LakeError> {
    let corrupt = |reason: String| LakeError::Corrupt {
        file: opened.relative.clone(),
        reason,
        source: None,
    };
    if let Some(last) = deleted.last()
        && last >= opened.num_rows()
    {
        return Err(corrupt(format!(
            "the table deletes row {last} of a file of {} rows",
            opened.num_rows()
        )));
    }
    let mut newly = 0;
    let mut start = 0u64;
    for (rg, meta) in opened.metadata.metadata().row_groups().iter().enumerate() {
        let rows = u64::try_from(meta.num_rows()).unwrap_or(0);
        let here = deleted.within(start, start + rows);
        if !here.is_empty() {
            let plan = plans
                .entry(rg)
                .or_insert_with(|| RowGroupPlan::keep_all(rows as usize));
            newly += plan
                .remove_records(here.iter().map(|&p| (p - start) as usize))
                .map_err(|reason| corrupt(format!("row group {rg}: {reason}")))?;
        }
        start += rows;
    }
    Ok(newly)
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use arrow_array::{ArrayRef, BinaryArray, RecordBatch};
    use arrow_schema::{DataType, Field, Schema};
    use parquet::arrow::ArrowWriter;
    use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
    use parquet::file::properties::{BloomFilterPosition, WriterProperties};

    use super::server_side_runs;

    /// Four row groups of 2 MiB (32 rows of 64 KiB, no dictionary), with or without bloom
    /// filters; returns the footer and the file's size.
    fn four_row_groups(blooms: Option<BloomFilterPosition>) -> (ParquetMetaData, u64) {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "payload",
            DataType::Binary,
            false,
        )]));
        let mut props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(32))
            .set_dictionary_enabled(false)
            .set_bloom_filter_enabled(blooms.is_some());
        if let Some(position) = blooms {
            props = props.set_bloom_filter_position(position);
        }
        let props = props.build();
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
        let (md, len) = four_row_groups(None);
        assert_eq!(server_side_runs(&md, &set(&[]), len), set(&[0, 1, 2, 3]));
        assert_eq!(server_side_runs(&md, &set(&[0]), len), set(&[1, 2, 3]));
        assert_eq!(server_side_runs(&md, &set(&[3]), len), set(&[0, 1, 2]));
        // 2 MiB and 4 MiB on either side of the touched row group: too short.
        assert_eq!(server_side_runs(&md, &set(&[1]), len), set(&[]));
        assert_eq!(server_side_runs(&md, &set(&[0, 3]), len), set(&[]));
    }

    #[test]
    fn bloom_filters_between_row_groups_or_after_them_do_not_end_a_run() {
        // After each row group: a row group's block of filters is part of its range.
        let (md, len) = four_row_groups(Some(BloomFilterPosition::AfterRowGroup));
        assert!(md.row_group(0).column(0).bloom_filter_offset().is_some());
        assert_eq!(server_side_runs(&md, &set(&[]), len), set(&[0, 1, 2, 3]));
        assert_eq!(server_side_runs(&md, &set(&[3]), len), set(&[0, 1, 2]));
        assert_eq!(server_side_runs(&md, &set(&[1]), len), set(&[]));
        let (md, len) = four_row_groups(Some(BloomFilterPosition::End));
        assert!(md.row_group(3).column(0).bloom_filter_offset().is_some());
        assert_eq!(server_side_runs(&md, &set(&[]), len), set(&[0, 1, 2, 3]));
        assert_eq!(server_side_runs(&md, &set(&[0]), len), set(&[1, 2, 3]));
        assert_eq!(server_side_runs(&md, &set(&[1]), len), set(&[]));
    }
}
