//! Row-group surgery and the page filter: untouched row groups copied byte for byte,
//! affected chunks filtered page by page with recomputed statistics, page index and bloom
//! filters, every codec written back.

use super::*;

/// The bytes of every column chunk of row group `rg` of the file at `path`.
fn chunk_bytes(path: &std::path::Path, rg: usize) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(path).unwrap();
    let reader = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap();
    reader
        .metadata()
        .row_group(rg)
        .columns()
        .iter()
        .map(|c| {
            let (start, len) = c.byte_range();
            bytes[start as usize..(start + len) as usize].to_vec()
        })
        .collect()
}

#[tokio::test]
async fn row_groups_without_the_subject_are_copied_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    // Sorted by subject, 10 rows per row group: "u3" sits in row group 3 only.
    let rows: Vec<(String, i64)> = (0..80).map(|i| (format!("u{}", i / 10), i)).collect();
    let rows: Vec<(&str, i64)> = rows.iter().map(|(u, i)| (u.as_str(), *i)).collect();
    let props = props(10)
        .set_column_bloom_filter_enabled("user_id".into(), true)
        .set_column_dictionary_enabled("notes".into(), true)
        .build();
    let path = write_file(dir.path(), "f.parquet", &[events(&rows)], props);
    let before: Vec<Vec<Vec<u8>>> = (0..8).map(|rg| chunk_bytes(&path, rg)).collect();
    let pairs_before = pairs(&path);

    let outcome = Erase::new(root_of(&dir), "user_id")
        .subjects(["u3"])
        .execute()
        .await
        .unwrap();
    let m = &outcome.metrics;
    assert_eq!(m.rows_removed, 10);
    assert_eq!(
        m.surgery.row_groups_rewritten, 1,
        "only row group 3 is decoded"
    );
    assert_eq!(m.surgery.row_groups_copied, 7);
    assert!(m.surgery.bytes_copied > 6 * m.surgery.bytes_reencoded);

    let reader = SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
    let md = reader.metadata();
    assert_eq!(md.num_row_groups(), 7, "the emptied row group is dropped");
    let kept: Vec<usize> = vec![0, 1, 2, 4, 5, 6, 7];
    for (new, old) in kept.iter().enumerate() {
        assert_eq!(
            chunk_bytes(&path, new),
            before[*old],
            "row group {old} copied byte for byte"
        );
        let rg = md.row_group(new);
        assert!(
            rg.column(0).bloom_filter_offset().is_some(),
            "bloom filter copied"
        );
        assert!(rg.column(0).statistics().is_some(), "statistics copied");
    }
    assert_eq!(pairs(&path), without(pairs_before, &["u3"]));
    // The copied bloom filters still answer for their row groups.
    let sbbf = reader
        .get_row_group(0)
        .unwrap()
        .get_column_bloom_filter(0)
        .cloned();
    assert!(sbbf.is_none_or(|b| b.check(&"u0")));
    let located = crate::lake::Locate::new(root_of(&dir), "user_id")
        .subjects(["u5"])
        .execute()
        .await
        .unwrap();
    assert_eq!(located.files[0].rows, 10);
    assert_eq!(located.files[0].row_groups, vec![4]);
}

#[tokio::test]
async fn an_affected_row_group_is_filtered_page_by_page_and_the_erased_values_leave_the_file() {
    use parquet::file::properties::EnabledStatistics;
    use parquet::file::serialized_reader::ReadOptionsBuilder;
    use parquet::file::statistics::Statistics;

    let dir = tempfile::tempdir().unwrap();
    // One row group of 2,000 rows in pages of 100; the subject's 6 rows sit in one page.
    let rows: Vec<(String, i64)> = (0..2000)
        .map(|i| {
            let user = if (500..506).contains(&i) {
                "zz-victim".to_string()
            } else {
                format!("u{:03}", i % 150)
            };
            (user, i)
        })
        .collect();
    let rows: Vec<(&str, i64)> = rows.iter().map(|(u, i)| (u.as_str(), *i)).collect();
    let props = props(10_000)
        .set_compression(Compression::UNCOMPRESSED)
        .set_column_compression("notes".into(), Compression::UNCOMPRESSED)
        .set_data_page_row_count_limit(100)
        .set_write_batch_size(50)
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_column_bloom_filter_enabled("user_id".into(), true)
        .build();
    let path = write_file(dir.path(), "f.parquet", &[events(&rows)], props);
    let before = std::fs::read(&path).unwrap();
    let contains = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    assert!(contains(&before, b"zz-victim") && contains(&before, b"note 502"));
    let pairs_before = pairs(&path);

    let outcome = Erase::new(root_of(&dir), "user_id")
        .subjects(["zz-victim"])
        .execute()
        .await
        .unwrap();
    let m = &outcome.metrics.surgery;
    assert_eq!(outcome.metrics.rows_removed, 6);
    assert_eq!(m.row_groups_rewritten, 1);
    assert!(
        m.pages_copied > 10 * m.pages_reencoded && m.pages_reencoded > 0,
        "only the pages that held the subject are encoded again: {m:?}"
    );

    let after = std::fs::read(&path).unwrap();
    assert!(
        !contains(&after, b"zz-victim") && !contains(&after, b"note 502"),
        "the subject's values are gone from dictionaries, statistics and page index"
    );
    assert_eq!(pairs(&path), without(pairs_before, &["zz-victim"]));

    let options = ReadOptionsBuilder::new()
        .with_page_index()
        .with_reader_properties(
            parquet::file::properties::ReaderProperties::builder()
                .set_read_bloom_filter(true)
                .build(),
        )
        .build();
    let reader =
        SerializedFileReader::new_with_options(std::fs::File::open(&path).unwrap(), options)
            .unwrap();
    let md = reader.metadata();
    let user_id = md.row_group(0).column(0);
    assert!(
        user_id.dictionary_page_offset().is_some(),
        "still dictionary encoded"
    );
    match user_id.statistics() {
        Some(Statistics::ByteArray(s)) => {
            assert_eq!(s.min_opt().unwrap().data(), b"u000");
            assert_eq!(
                s.max_opt().unwrap().data(),
                b"u149",
                "recomputed, not carried over"
            );
        }
        other => panic!("user_id statistics: {other:?}"),
    }
    let offsets = md
        .page_index_for_row_group(0)
        .offset_index(0)
        .cloned()
        .expect("offset index written");
    let first_rows: Vec<i64> = offsets
        .page_locations()
        .iter()
        .map(|p| p.first_row_index)
        .collect();
    assert_eq!(first_rows.len(), 20);
    assert_eq!(
        first_rows[5..7],
        [500, 594],
        "the page that lost 6 rows holds 94"
    );
    let bloom = reader
        .get_row_group(0)
        .unwrap()
        .get_column_bloom_filter(0)
        .cloned()
        .expect("bloom filter rebuilt");
    assert!(bloom.check(&"u007") && !bloom.check(&"zz-victim"));
}

#[tokio::test]
async fn a_chunk_whose_dictionary_overflowed_into_plain_pages_is_filtered_in_both_kinds() {
    let dir = tempfile::tempdir().unwrap();
    // Distinct ids overflow a 1 KiB dictionary after a few pages: the chunk holds dictionary
    // pages, then PLAIN pages. The subject has rows in both kinds.
    let rows: Vec<(String, i64)> = (0..3000)
        .map(|i| {
            let user = if i == 10 || i == 2900 {
                "victim".to_string()
            } else {
                format!("user-{i:05}")
            };
            (user, i)
        })
        .collect();
    let rows: Vec<(&str, i64)> = rows.iter().map(|(u, i)| (u.as_str(), *i)).collect();
    let props = props(10_000)
        .set_compression(Compression::UNCOMPRESSED)
        .set_column_compression("notes".into(), Compression::UNCOMPRESSED)
        .set_dictionary_page_size_limit(1024)
        .set_data_page_row_count_limit(100)
        .set_write_batch_size(50)
        .build();
    let path = write_file(dir.path(), "f.parquet", &[events(&rows)], props);
    let encodings: Vec<_> = {
        let reader = SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
        reader
            .metadata()
            .row_group(0)
            .column(0)
            .encodings()
            .collect()
    };
    assert!(
        encodings.contains(&parquet::basic::Encoding::PLAIN)
            && encodings.contains(&parquet::basic::Encoding::RLE_DICTIONARY),
        "{encodings:?}"
    );
    let pairs_before = pairs(&path);
    let outcome = Erase::new(root_of(&dir), "user_id")
        .subjects(["victim"])
        .execute()
        .await
        .unwrap();
    assert_eq!(outcome.metrics.rows_removed, 2);
    assert!(outcome.metrics.surgery.pages_copied > 0);
    let after = std::fs::read(&path).unwrap();
    assert!(!after.windows(6).any(|w| w == b"victim"));
    assert_eq!(pairs(&path), without(pairs_before, &["victim"]));
}

#[tokio::test]
async fn chunk_statistics_without_a_page_index_come_from_the_values_kept() {
    use parquet::file::properties::EnabledStatistics;
    use parquet::file::statistics::Statistics;

    let dir = tempfile::tempdir().unwrap();
    // "zz" is the largest id and "aa" the smallest; both are erased.
    let rows: Vec<(String, i64)> = (0..1000)
        .map(|i| {
            let user = match i {
                3 => "aa".to_string(),
                700 => "zz".to_string(),
                _ => format!("m{:02}", i % 40),
            };
            (user, i)
        })
        .collect();
    let rows: Vec<(&str, i64)> = rows.iter().map(|(u, i)| (u.as_str(), *i)).collect();
    let props = props(10_000)
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .set_data_page_row_count_limit(100)
        .set_write_batch_size(50)
        .build();
    let path = write_file(dir.path(), "f.parquet", &[events(&rows)], props);
    let outcome = Erase::new(root_of(&dir), "user_id")
        .subjects(["aa", "zz"])
        .execute()
        .await
        .unwrap();
    assert_eq!(outcome.metrics.rows_removed, 2);
    assert!(outcome.metrics.surgery.pages_copied > 0);
    let reader = SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
    let rg = reader.metadata().row_group(0);
    match rg.column(0).statistics() {
        Some(Statistics::ByteArray(s)) => {
            assert_eq!(s.min_opt().unwrap().data(), b"m00");
            assert_eq!(s.max_opt().unwrap().data(), b"m39");
            assert_eq!(s.null_count_opt(), Some(0));
        }
        other => panic!("user_id statistics: {other:?}"),
    }
    match rg.column(1).statistics() {
        Some(Statistics::Int64(s)) => {
            assert_eq!((s.min_opt(), s.max_opt()), (Some(&0), Some(&999)))
        }
        other => panic!("id statistics: {other:?}"),
    }
    match rg.column(4).statistics() {
        // Odd ids have no note; id 3 was one of them.
        Some(Statistics::ByteArray(s)) => assert_eq!(s.null_count_opt(), Some(499)),
        other => panic!("notes statistics: {other:?}"),
    }
}

#[tokio::test]
async fn float_chunks_are_filtered_page_by_page_with_the_total_order_statistics_of_the_crate() {
    use arrow_array::{Float32Array, Float64Array, StringArray};
    use arrow_schema::{DataType, Field, Schema};
    use parquet::file::page_index::column_index::ColumnIndexMetaData;
    use parquet::file::properties::EnabledStatistics;
    use parquet::file::serialized_reader::ReadOptionsBuilder;
    use parquet::file::statistics::Statistics;

    // 2,000 rows in pages of 100. The subject's rows (500..506) hold both extremes of both
    // float columns; NaN every 37 rows, -0.0 and +0.0 elsewhere. `score` is dictionary
    // encoded, `ratio` plain.
    let victim = |i: usize| (500..506).contains(&i);
    let user = |i: usize| {
        if victim(i) {
            "zz-victim".to_string()
        } else {
            format!("u{:03}", i % 150)
        }
    };
    let score = |i: usize| match i {
        500 => 1e9,
        501 => -1e9,
        _ if i.is_multiple_of(37) => f64::NAN,
        7 => -0.0,
        _ => (i % 50) as f64 / 4.0,
    };
    let ratio = |i: usize| match i {
        502 => f32::INFINITY,
        503 => f32::NEG_INFINITY,
        _ if i.is_multiple_of(37) => f32::NAN,
        _ => i as f32 / 3.0,
    };
    let schema = Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Utf8, false),
        Field::new("score", DataType::Float64, false),
        Field::new("ratio", DataType::Float32, false),
    ]));
    let batch_of = |rows: &[usize]| {
        RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|&i| user(i)))),
                Arc::new(Float64Array::from_iter_values(
                    rows.iter().map(|&i| score(i)),
                )),
                Arc::new(Float32Array::from_iter_values(
                    rows.iter().map(|&i| ratio(i)),
                )),
            ],
        )
        .unwrap()
    };
    let props = || {
        props(10_000)
            .set_data_page_row_count_limit(100)
            .set_write_batch_size(50)
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_column_dictionary_enabled("ratio".into(), false)
            .build()
    };
    let dir = tempfile::tempdir().unwrap();
    let all: Vec<usize> = (0..2000).collect();
    let path = write_file(dir.path(), "f.parquet", &[batch_of(&all)], props());
    let kept: Vec<usize> = all.iter().copied().filter(|&i| !victim(i)).collect();
    let expected_dir = tempfile::tempdir().unwrap();
    let expected = write_file(
        expected_dir.path(),
        "e.parquet",
        &[batch_of(&kept)],
        props(),
    );

    let outcome = Erase::new(root_of(&dir), "user_id")
        .subjects(["zz-victim"])
        .execute()
        .await
        .unwrap();
    assert_eq!(outcome.metrics.rows_removed, 6);
    let m = &outcome.metrics.surgery;
    assert!(
        m.pages_copied >= 3 * 19,
        "the float chunks' untouched pages are copied too: {m:?}"
    );

    let open = |p: &std::path::Path| {
        let options = ReadOptionsBuilder::new().with_page_index().build();
        SerializedFileReader::new_with_options(std::fs::File::open(p).unwrap(), options).unwrap()
    };
    let (got, want) = (open(&path), open(&expected));
    for column in [1, 2] {
        let (g, w) = (
            got.metadata().row_group(0).column(column),
            want.metadata().row_group(0).column(column),
        );
        assert_eq!(
            g.statistics(),
            w.statistics(),
            "column {column}: the statistics the parquet crate writes for the rows kept"
        );
        assert_eq!(
            g.encodings().collect::<Vec<_>>(),
            w.encodings().collect::<Vec<_>>()
        );
    }
    match got.metadata().row_group(0).column(1).statistics() {
        Some(Statistics::Double(s)) => {
            assert_eq!(s.min_opt(), Some(&-0.0));
            assert!(s.min_opt().unwrap().is_sign_negative());
            assert_eq!(s.max_opt(), Some(&12.25));
            assert_eq!(
                s.nan_count_opt(),
                Some(kept.iter().filter(|&&i| i.is_multiple_of(37)).count() as u64)
            );
        }
        other => panic!("score statistics: {other:?}"),
    }
    // The page that lost the subject's rows is bounded by what it kept.
    match got.metadata().page_index_for_row_group(0).column_index(1) {
        Some(ColumnIndexMetaData::DOUBLE(ci)) => {
            let maxes: Vec<f64> = (0..ci.num_pages() as usize)
                .map(|p| *ci.max_value(p).unwrap())
                .collect();
            assert!(maxes.iter().all(|&m| m < 1e9), "{maxes:?}");
            let nans: i64 = (0..ci.num_pages() as usize)
                .map(|p| ci.nan_count(p).unwrap())
                .sum();
            assert_eq!(
                nans as usize,
                kept.iter().filter(|&&i| i.is_multiple_of(37)).count()
            );
        }
        other => panic!("score column index: {other:?}"),
    }
    let read = |p: &std::path::Path| {
        read_all(p)
            .iter()
            .flat_map(|b| {
                let s = b
                    .column(1)
                    .as_any()
                    .downcast_ref::<Float64Array>()
                    .unwrap()
                    .clone();
                let r = b
                    .column(2)
                    .as_any()
                    .downcast_ref::<Float32Array>()
                    .unwrap()
                    .clone();
                (0..b.num_rows())
                    .map(move |i| (s.value(i).to_bits(), r.value(i).to_bits()))
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        read(&path),
        read(&expected),
        "every kept value, bit for bit"
    );
}

#[tokio::test]
async fn pages_encoded_again_keep_every_codec_the_page_filter_writes() {
    use parquet::basic::{BrotliLevel, GzipLevel, ZstdLevel};
    let rows: Vec<(String, i64)> = (0..1500)
        .map(|i| {
            let user = if i == 5 || i == 1205 {
                "victim".to_string()
            } else {
                format!("u{:03}", i % 40)
            };
            (user, i)
        })
        .collect();
    let rows: Vec<(&str, i64)> = rows.iter().map(|(u, i)| (u.as_str(), *i)).collect();
    for compression in [
        Compression::UNCOMPRESSED,
        Compression::GZIP(GzipLevel::default()),
        Compression::BROTLI(BrotliLevel::default()),
        Compression::LZ4_RAW,
        Compression::ZSTD(ZstdLevel::try_new(3).unwrap()),
        Compression::SNAPPY,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let props = props(10_000)
            .set_compression(compression)
            .set_column_compression("notes".into(), compression)
            .set_data_page_row_count_limit(100)
            .set_write_batch_size(50)
            .build();
        let path = write_file(dir.path(), "f.parquet", &[events(&rows)], props);
        let before = pairs(&path);
        let outcome = Erase::new(root_of(&dir), "user_id")
            .subjects(["victim"])
            .execute()
            .await
            .unwrap();
        let m = &outcome.metrics.surgery;
        assert!(
            m.pages_reencoded > 0 && m.pages_copied > 0,
            "{compression:?}: {m:?}"
        );
        assert_eq!(
            pairs(&path),
            without(before, &["victim"]),
            "{compression:?}"
        );
        let reader = SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
        let column = reader.metadata().row_group(0).column(0);
        // Levels are not recorded in a file: the codec is.
        assert_eq!(
            std::mem::discriminant(&column.compression()),
            std::mem::discriminant(&compression),
            "the chunk keeps its codec"
        );
    }
}

#[tokio::test]
async fn pages_encoded_again_are_compressed_at_the_level_the_writer_used() {
    use crate::lake::rewrite::surgery::split_pages;
    use parquet::basic::ZstdLevel;
    let rows: Vec<(String, i64)> = (0..40_000)
        .map(|i| {
            let user = if i % 5000 == 7 {
                "victim".to_string()
            } else {
                format!("user-{:04}-{}", i % 977, i % 13)
            };
            (user, i)
        })
        .collect();
    let rows: Vec<(&str, i64)> = rows.iter().map(|(u, i)| (u.as_str(), *i)).collect();
    let dir = tempfile::tempdir().unwrap();
    let level = Compression::ZSTD(ZstdLevel::try_new(9).unwrap());
    // A writer of its own: levels are remembered per writer and column in the process.
    let props = props(10_000)
        .set_created_by("lethe level test".into())
        .set_compression(level)
        .set_column_compression("notes".into(), level)
        .set_dictionary_enabled(false)
        .set_data_page_row_count_limit(5000)
        .set_write_batch_size(1000)
        .build();
    let path = write_file(dir.path(), "f.parquet", &[events(&rows)], props);
    let original = chunk_bytes(&path, 0);
    let outcome = Erase::new(root_of(&dir), "user_id")
        .subjects(["victim"])
        .execute()
        .await
        .unwrap();
    assert!(outcome.metrics.surgery.pages_reencoded > 0);
    // Every page encoded again (one the original chunk does not hold as it is) is what ZSTD
    // level 9 makes of its body; level 1 (the parquet crate's default, used before) makes
    // other bytes. (The original pages come from a streaming encoder: same level, other
    // framing, so the level is found by the size of its output.)
    let (mut reencoded, mut differs_at_level_1) = (0, 0);
    for (chunk, before) in chunk_bytes(&path, 0).iter().zip(&original) {
        for page in split_pages(chunk).unwrap() {
            let bytes = &chunk[page.range.clone()];
            if before.windows(bytes.len()).any(|w| w == bytes) {
                continue;
            }
            reencoded += 1;
            let body = &chunk[page.range.start + page.header_len..page.range.end];
            let plain = zstd::bulk::decompress(body, page.uncompressed_size).unwrap();
            let matching: Vec<i32> = (1..=19)
                .filter(|l| zstd::bulk::compress(&plain, *l).unwrap() == body)
                .collect();
            eprintln!("DEBUG page {} bytes, bulk levels {matching:?}", body.len());
            assert_eq!(zstd::bulk::compress(&plain, 9).unwrap(), body);
            differs_at_level_1 += usize::from(zstd::bulk::compress(&plain, 1).unwrap() != body);
        }
    }
    assert!(reencoded > 0);
    assert!(
        differs_at_level_1 > 0,
        "the data does not tell the levels apart"
    );
}
