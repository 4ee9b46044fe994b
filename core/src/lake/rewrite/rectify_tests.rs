use super::*;
use crate::lake::testlake::*;
use arrow_array::{Float64Array, StringArray};
use arrow_schema::{Field, Schema};
use serde_json::json;

const EU: &str = "date=2025-01-07/region=EU/part-0.parquet";
const US: &str = "date=2025-01-07/region=US/part-0.parquet";
const APAC: &str = "date=2025-01-08/region=APAC/part-0.parquet";

fn change(column: &str, value: Value) -> ColumnChange {
    ColumnChange {
        column: column.into(),
        owner: "user_id".into(),
        value,
        sealed_as: None,
    }
}

fn root(dir: &std::path::Path) -> LakeRoot {
    LakeRoot::parse(&dir.display().to_string()).unwrap()
}

/// `(user_id, id) → (distance_km, notes)` of every row in the file.
fn rows(path: &std::path::Path) -> BTreeMap<(String, i64), (Option<f64>, Option<String>)> {
    let mut out = BTreeMap::new();
    for b in read_all(path) {
        let col = |n: &str| b.column_by_name(n).unwrap().clone();
        let users = col("user_id");
        let users = users.as_any().downcast_ref::<StringArray>().unwrap();
        let ids = col("id");
        let ids = ids
            .as_any()
            .downcast_ref::<arrow_array::Int64Array>()
            .unwrap();
        let distance = col("distance_km");
        let distance = distance.as_any().downcast_ref::<Float64Array>().unwrap();
        let notes = col("notes");
        let notes = notes.as_any().downcast_ref::<StringArray>().unwrap();
        for i in 0..b.num_rows() {
            out.insert(
                (users.value(i).to_string(), ids.value(i)),
                (
                    distance.is_valid(i).then(|| distance.value(i)),
                    notes.is_valid(i).then(|| notes.value(i).to_string()),
                ),
            );
        }
    }
    out
}

#[tokio::test]
async fn only_the_subjects_rows_change_and_files_without_them_are_not_written() {
    let dir = tempfile::tempdir().unwrap();
    three_file_lake(dir.path());
    let before: BTreeMap<&str, _> = [EU, US, APAC]
        .into_iter()
        .map(|f| (f, rows(&dir.path().join(f))))
        .collect();
    let us_bytes = std::fs::read(dir.path().join(US)).unwrap();

    let outcome = Rectify::new(root(dir.path()), "u1")
        .change(change("notes", json!("corrected")))
        .change(change("distance_km", json!(9.5)))
        .execute()
        .await
        .unwrap();
    assert!(!outcome.has_failures());
    assert_eq!(outcome.metrics.files_rewritten, 2);
    assert_eq!(outcome.metrics.rows_changed, 20);
    assert_eq!(std::fs::read(dir.path().join(US)).unwrap(), us_bytes);
    for f in [EU, APAC] {
        let after = rows(&dir.path().join(f));
        assert_eq!(after.len(), before[f].len(), "no row added or removed");
        for (key, old) in &before[f] {
            let new = &after[key];
            if key.0 == "u1" {
                assert_eq!(new, &(Some(9.5), Some("corrected".to_string())));
            } else {
                assert_eq!(new, old, "{key:?} is someone else's row");
            }
        }
    }
    let eu = outcome
        .files
        .iter()
        .find(|f| f.file.relative == EU)
        .unwrap();
    assert_eq!(eu.rows_changed, 10);
    assert_eq!(eu.file.rows_removed, 0);
}

#[tokio::test]
async fn a_value_that_does_not_fit_a_file_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    three_file_lake(dir.path());
    let snapshot = |d: &std::path::Path| -> Vec<Vec<u8>> {
        [EU, US, APAC]
            .iter()
            .map(|f| std::fs::read(d.join(f)).unwrap())
            .collect()
    };
    let before = snapshot(dir.path());
    let cases = [
        (change("distance_km", json!("far")), "cannot be stored"),
        (change("id", json!(null)), "not nullable"),
        (change("region", json!("US")), "partition key"),
    ];
    for (c, expected) in cases {
        let e = Rectify::new(root(dir.path()), "u1")
            .change(c)
            .execute()
            .await
            .unwrap_err();
        assert!(
            matches!(e, LakeError::InvalidValue { .. }),
            "{e} should be InvalidValue"
        );
        assert!(e.to_string().contains(expected), "{e}");
    }
    let e = Rectify::new(root(dir.path()), "u1")
        .change(change("shoe_size", json!(42)))
        .execute()
        .await
        .unwrap_err();
    assert!(matches!(e, LakeError::MissingColumn { .. }), "{e}");
    assert_eq!(snapshot(dir.path()), before);
}

/// Seals a value as `sealed:<owner>:<value>`.
#[derive(Debug)]
struct Labeller;

impl CellSealer for Labeller {
    fn seal(
        &self,
        _column: &str,
        values: &ArrayRef,
        owners: &StringArray,
    ) -> Result<BinaryArray, String> {
        let values = arrow_cast::cast(values, &DataType::Utf8).map_err(|e| e.to_string())?;
        let values = values.as_any().downcast_ref::<StringArray>().unwrap();
        Ok((0..owners.len())
            .map(|i| {
                owners
                    .is_valid(i)
                    .then(|| format!("sealed:{}:{}", owners.value(i), values.value(i)))
            })
            .map(|v| v.map(String::into_bytes))
            .collect())
    }
}

#[tokio::test]
async fn encrypted_columns_are_sealed_for_the_subjects_rows_only() {
    let dir = tempfile::tempdir().unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Utf8, false),
        Field::new("lat", DataType::Binary, true),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(vec!["u1", "u2", "u1"])),
            Arc::new(BinaryArray::from_opt_vec(vec![
                Some(b"old-1"),
                Some(b"old-2"),
                None,
            ])),
        ],
    )
    .unwrap();
    write_file(dir.path(), "part-0.parquet", &[batch], props(10).build());
    let sealed = ColumnChange {
        sealed_as: Some(DataType::Float64),
        ..change("lat", json!(51.5))
    };
    let without_key = Rectify::new(root(dir.path()), "u1")
        .change(sealed.clone())
        .execute()
        .await
        .unwrap_err();
    assert!(without_key.to_string().contains("no key"), "{without_key}");
    let outcome = Rectify::new(root(dir.path()), "u1")
        .change(sealed)
        .sealer(Arc::new(Labeller))
        .execute()
        .await
        .unwrap();
    assert_eq!(outcome.metrics.rows_changed, 2);
    let batches = read_all(&dir.path().join("part-0.parquet"));
    let lat = batches[0].column_by_name("lat").unwrap();
    let lat = lat.as_any().downcast_ref::<BinaryArray>().unwrap();
    assert_eq!(lat.value(0), b"sealed:u1:51.5");
    assert_eq!(lat.value(1), b"old-2", "u2's cell is untouched");
    assert_eq!(lat.value(2), b"sealed:u1:51.5");
}
