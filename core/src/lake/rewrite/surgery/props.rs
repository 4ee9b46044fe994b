//! Writer settings that keep a file's own layout for the row groups Lethe encodes again: the
//! codec, dictionary encoding and value encoding of each column chunk, statistics and page
//! index where the input had them, bloom filters on every column that had one, sorting
//! columns, key-value metadata, and an honest `created_by` (the original kept in key-value
//! metadata under [`ORIGINAL_CREATED_BY`]).

use parquet::basic::{Encoding, LogicalType, PageType, Type as PhysicalType};
use parquet::file::metadata::{ColumnChunkMetaData, KeyValue, ParquetMetaData};
use parquet::file::properties::{
    BloomFilterPosition, DEFAULT_CREATED_BY, EnabledStatistics, WriterProperties, WriterVersion,
};

use super::bloom_layout::between_row_groups;
use super::codec::infer_level;

/// Key-value metadata key holding the `created_by` of the file Lethe first rewrote.
pub(crate) const ORIGINAL_CREATED_BY: &str = "lethe.original_created_by";

/// The `created_by` of files Lethe writes (`<app> version <v> (build <…>)`, the form parquet-mr
/// and Arrow C++ parse).
pub(crate) fn created_by() -> String {
    format!(
        "lethe version {} (build {DEFAULT_CREATED_BY})",
        env!("CARGO_PKG_VERSION")
    )
}

/// The key-value metadata of a rewrite of a file whose footer is `md`: the original's, plus
/// [`ORIGINAL_CREATED_BY`] unless an earlier rewrite recorded it already.
pub(crate) fn key_value_metadata(md: &ParquetMetaData) -> Option<Vec<KeyValue>> {
    let fm = md.file_metadata();
    let mut kv = fm.key_value_metadata().cloned().unwrap_or_default();
    let recorded = kv.iter().any(|e| e.key == ORIGINAL_CREATED_BY);
    match fm.created_by() {
        Some(original) if !recorded => kv.push(KeyValue::new(
            ORIGINAL_CREATED_BY.to_string(),
            original.to_string(),
        )),
        _ => {}
    }
    (!kv.is_empty()).then_some(kv)
}

/// Whether the chunk's pages are dictionary encoded.
fn has_dictionary(col: &ColumnChunkMetaData) -> bool {
    col.dictionary_page_offset().is_some()
        || col
            .encodings()
            .any(|e| matches!(e, Encoding::PLAIN_DICTIONARY | Encoding::RLE_DICTIONARY))
}

/// The chunk's value encoding (besides dictionary) when it is one the writer can produce for
/// the column's physical type; `None`: PLAIN.
fn value_encoding(col: &ColumnChunkMetaData) -> Option<Encoding> {
    let physical = col.column_type();
    col.encodings().find(|e| match e {
        Encoding::DELTA_BINARY_PACKED => {
            matches!(physical, PhysicalType::INT32 | PhysicalType::INT64)
        }
        Encoding::DELTA_LENGTH_BYTE_ARRAY => physical == PhysicalType::BYTE_ARRAY,
        Encoding::DELTA_BYTE_ARRAY => matches!(
            physical,
            PhysicalType::BYTE_ARRAY | PhysicalType::FIXED_LEN_BYTE_ARRAY
        ),
        Encoding::BYTE_STREAM_SPLIT => matches!(
            physical,
            PhysicalType::INT32
                | PhysicalType::INT64
                | PhysicalType::FLOAT
                | PhysicalType::DOUBLE
                | PhysicalType::FIXED_LEN_BYTE_ARRAY
        ),
        _ => false,
    })
}

/// Whether the chunk's data pages are DataPageV2 (when its footer says).
fn has_v2_pages(col: &ColumnChunkMetaData) -> bool {
    col.page_encoding_stats()
        .is_some_and(|s| s.iter().any(|p| p.page_type == PageType::DATA_PAGE_V2))
}

/// Writer settings for the rewrite of the file whose footer (with its page index, if loaded)
/// is `md`, taking each column's layout from row group `reference` (the first one encoded
/// again).
pub(crate) fn writer_properties(md: &ParquetMetaData, reference: usize) -> WriterProperties {
    let rgs = md.row_groups();
    let mut b = WriterProperties::builder()
        .set_created_by(created_by())
        .set_max_row_group_row_count(None)
        .set_max_row_group_bytes(None)
        .set_key_value_metadata(key_value_metadata(md))
        // Bloom filters where the original has them (`bloom_layout`): after each row group
        // or after the last (as parquet-mr and Arrow C++, and the default). A run of copied row
        // groups then lies in the new file as in the original, and one server-side copy takes
        // it whole (`sink::server_side_runs`).
        .set_bloom_filter_position(if between_row_groups(md) {
            BloomFilterPosition::AfterRowGroup
        } else {
            BloomFilterPosition::End
        });
    let Some(rg) = rgs.get(reference).or_else(|| rgs.first()) else {
        return b.build();
    };
    if let Some(sorting) = rg.sorting_columns() {
        b = b.set_sorting_columns(Some(sorting.clone()));
    }
    if rg.columns().iter().any(has_v2_pages) {
        b = b.set_writer_version(WriterVersion::PARQUET_2_0);
    }
    let page_index = md.page_index();
    let writer = md.file_metadata().created_by();
    let max_rows = rgs.iter().map(|r| r.num_rows()).max().unwrap_or(0);
    for (i, col) in rg.columns().iter().enumerate() {
        let path = col.column_path().clone();
        b = b
            // The level inferred earlier in this process for the same writer and column, if
            // any (the page filter infers it from a page; the footer does not say it).
            .set_column_compression(
                path.clone(),
                infer_level(col.compression(), writer, &path.string(), || None),
            )
            .set_column_dictionary_enabled(path.clone(), has_dictionary(col))
            .set_column_encoding(path.clone(), value_encoding(col).unwrap_or(Encoding::PLAIN));
        let had_column_index =
            page_index.is_some_and(|p| (0..rgs.len()).any(|r| p.column_index(r, i).is_some()));
        // A logical type the parquet crate does not know has no known sort order: its
        // min/max cannot be computed for it (copied chunks keep their writer's).
        let unknown_order = matches!(
            col.column_descr().logical_type_ref(),
            Some(LogicalType::_Unknown { .. })
        );
        let statistics = if unknown_order {
            EnabledStatistics::None
        } else if had_column_index {
            EnabledStatistics::Page
        } else if col.statistics().is_some() {
            EnabledStatistics::Chunk
        } else {
            EnabledStatistics::None
        };
        b = b.set_column_statistics_enabled(path.clone(), statistics);
        if rgs
            .iter()
            .any(|r| r.column(i).bloom_filter_offset().is_some())
        {
            b = b
                .set_column_bloom_filter_enabled(path.clone(), true)
                .set_column_bloom_filter_max_ndv(path, u64::try_from(max_rows).unwrap_or(0).max(1));
        }
    }
    b.build()
}
