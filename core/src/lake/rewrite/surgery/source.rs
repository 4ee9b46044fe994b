//! Where the surgery's row groups come from: the footer with its page index, the column
//! chunks of one row group fetched from the store, and the plans of the candidate row groups
//! (their input columns fetched and decoded once).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use parquet::arrow::async_reader::{AsyncFileReader, ParquetRecordBatchStreamBuilder};
use parquet::bloom_filter::Sbbf;
use parquet::errors::ParquetError;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader};

use super::chunks::{FetchedRanges, chunk_range};
use super::{RowGroupPlan, SourceRowGroup, bloom_block, plan_row_group};
use crate::lake::error::LakeError;
use crate::lake::open::OpenFile;
use crate::lake::rewrite::RowFilter;
use crate::lake::run_blocking;

/// The footer of `opened` with its page index (column and offset indexes, where the file has
/// them).
///
/// # Errors
/// [`LakeError::Corrupt`] when the page index does not decode.
pub(crate) async fn load_page_index(opened: &OpenFile) -> Result<Arc<ParquetMetaData>, LakeError> {
    let mut reader = opened.reader.clone();
    let mut with_index =
        ParquetMetaDataReader::new_with_metadata(opened.metadata.metadata().as_ref().clone())
            .with_page_index_policy(PageIndexPolicy::Optional);
    with_index
        .load_page_index(&mut reader)
        .await
        .map_err(|e| LakeError::corrupt(&opened.relative, "reading the page index", e))?;
    let md = with_index
        .finish()
        .map_err(|e| LakeError::corrupt(&opened.relative, "reading the page index", e))?;
    Ok(Arc::new(md))
}

/// The plans of the candidate row groups that change something, by row group: each
/// candidate's input columns are fetched and decoded once, and the filter decides.
///
/// # Errors
/// [`LakeError`] naming the file when a column does not decode or the filter fails.
pub(crate) async fn plan_candidates(
    opened: &OpenFile,
    filter: &Arc<dyn RowFilter>,
    candidates: &BTreeSet<usize>,
) -> Result<BTreeMap<usize, RowGroupPlan>, LakeError> {
    let md = opened.metadata.metadata();
    let descr = opened.parquet_schema();
    let schema = opened.metadata.schema();
    let roots: BTreeSet<usize> = filter
        .input_columns()
        .iter()
        .filter_map(|c| schema.index_of(c).ok())
        .collect();
    let leaves: Vec<usize> = (0..descr.num_columns())
        .filter(|&i| roots.contains(&descr.get_column_root_idx(i)))
        .collect();
    let mut plans = BTreeMap::new();
    for &rg in candidates {
        let source = fetch_row_group(opened, md, rg, Some(&leaves), false).await?;
        let (relative, filter, arrow_md) = (
            opened.relative.clone(),
            Arc::clone(filter),
            opened.metadata.clone(),
        );
        let plan =
            run_blocking(move || plan_row_group(&relative, &arrow_md, &source, &filter)).await??;
        if !plan.is_noop() {
            plans.insert(rg, plan);
        }
    }
    Ok(plans)
}

/// Fetches the column chunks of row group `rg` (only `leaves` when given, none for
/// `Some(&[])`; and, when it is to be copied, its bloom filters).
///
/// # Errors
/// [`LakeError::Corrupt`] when a chunk's offsets are impossible, store errors.
pub(crate) async fn fetch_row_group(
    opened: &OpenFile,
    md: &ParquetMetaData,
    rg: usize,
    leaves: Option<&[usize]>,
    with_blooms: bool,
) -> Result<SourceRowGroup, LakeError> {
    let relative = opened.relative.as_str();
    let meta = md.row_group(rg).clone();
    let file_len = opened.reader.len();
    let ranges = meta
        .columns()
        .iter()
        .enumerate()
        .filter(|(i, _)| leaves.is_none_or(|l| l.contains(i)))
        .map(|(_, c)| chunk_range(c, file_len))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|reason| LakeError::Corrupt {
            file: relative.to_string(),
            reason: format!("row group {rg}: {reason}"),
            source: None,
        })?;
    let parts = if ranges.is_empty() {
        Vec::new()
    } else {
        opened
            .reader
            .clone()
            .get_byte_ranges(ranges.clone())
            .await
            .map_err(|e| LakeError::corrupt(relative, format!("reading row group {rg}"), e))?
    };
    let mut blooms = vec![None; meta.num_columns()];
    let mut bloom_bytes = None;
    let bloom_error = |e: ParquetError| {
        LakeError::corrupt(
            relative,
            format!("reading a bloom filter of row group {rg}"),
            e,
        )
    };
    if let Some(block) = with_blooms.then(|| bloom_block(&meta)).flatten() {
        // One request for the row group's filters, kept as bytes for a copy of the block.
        let raw = opened
            .reader
            .clone()
            .get_bytes(block.clone())
            .await
            .map_err(bloom_error)?;
        for (i, col) in meta.columns().iter().enumerate() {
            if let (Some(offset), Some(len)) =
                (col.bloom_filter_offset(), col.bloom_filter_length())
            {
                let at = usize::try_from(offset as u64 - block.start).unwrap_or(usize::MAX);
                let bytes = raw
                    .get(at..at.saturating_add(len as usize))
                    .ok_or_else(|| bloom_error(ParquetError::General("cut short".into())))?;
                blooms[i] = Some(Sbbf::from_bytes(bytes).map_err(bloom_error)?);
            }
        }
        bloom_bytes = Some((block.start, raw));
    } else if with_blooms {
        let mut builder = ParquetRecordBatchStreamBuilder::new_with_metadata(
            opened.reader.clone(),
            opened.metadata.clone(),
        );
        for (i, col) in meta.columns().iter().enumerate() {
            if col.bloom_filter_offset().is_some() {
                blooms[i] = builder
                    .get_row_group_column_bloom_filter(rg, i)
                    .await
                    .map_err(|e| {
                        LakeError::corrupt(
                            relative,
                            format!("reading a bloom filter of row group {rg}"),
                            e,
                        )
                    })?;
            }
        }
    }
    Ok(SourceRowGroup {
        index: rg,
        data: FetchedRanges::new(file_len, &ranges, parts),
        page_index: md.page_index_for_row_group(rg),
        meta,
        blooms,
        bloom_bytes,
    })
}
