//! Tests of what many workers sharing one erasure rely on: `.files(…)`, the commit guard,
//! removal of stale temporary objects, the conditional swap and multipart uploads.

use object_store::path::Path as StorePath;
use object_store::{ObjectStoreExt, PutPayload};

use super::*;
use crate::lake::testlake::*;

const EU: &str = "date=2025-01-07/region=EU/part-0.parquet";
const US: &str = "date=2025-01-07/region=US/part-0.parquet";
const APAC: &str = "date=2025-01-08/region=APAC/part-0.parquet";

fn local_root(dir: &tempfile::TempDir) -> LakeRoot {
    LakeRoot::parse(&dir.path().display().to_string()).unwrap()
}

fn outcome_of<'a>(outcome: &'a EraseOutcome, relative: &str) -> &'a FileOutcome {
    outcome
        .files
        .iter()
        .find(|f| f.relative == relative)
        .unwrap_or_else(|| panic!("no outcome for {relative}: {outcome:?}"))
}

fn temp_files(dir: &std::path::Path) -> Vec<String> {
    all_files(dir)
        .into_iter()
        .filter(|f| f.contains(engine::TEMP_MARKER))
        .collect()
}

/// A guard that refuses every file, recording what it was asked.
struct Refuse(std::sync::Mutex<Vec<String>>);

#[async_trait::async_trait]
impl CommitGuard for Refuse {
    async fn may_commit(&self, file: &str) -> Result<(), String> {
        self.0.lock().unwrap().push(file.to_string());
        Err("lease lost to worker w-2".into())
    }
}

#[tokio::test]
async fn a_refusing_commit_guard_leaves_the_original_untouched_and_no_temporary_object() {
    let dir = tempfile::tempdir().unwrap();
    three_file_lake(dir.path());
    let before = std::fs::read(dir.path().join(EU)).unwrap();
    let guard = Arc::new(Refuse(Default::default()));
    let outcome = Erase::new(local_root(&dir), "user_id")
        .subjects(["u2"])
        .commit_guard(guard.clone())
        .execute()
        .await
        .unwrap();
    let FileStatus::Failed { error } = &outcome_of(&outcome, EU).status else {
        panic!("not failed: {outcome:?}");
    };
    assert!(
        error.contains("fenced") && error.contains("lease lost"),
        "{error}"
    );
    assert_eq!(outcome_of(&outcome, US).status, FileStatus::Unchanged);
    assert_eq!(outcome.metrics.files_failed, 1);
    // Asked once, only for the file that was rewritten and verified.
    assert_eq!(*guard.0.lock().unwrap(), [EU]);
    assert_eq!(std::fs::read(dir.path().join(EU)).unwrap(), before);
    assert_eq!(temp_files(dir.path()), Vec::<String>::new());
}

#[tokio::test]
async fn files_restricts_the_erasure_to_the_named_files() {
    let dir = tempfile::tempdir().unwrap();
    three_file_lake(dir.path());
    let apac_before = std::fs::read(dir.path().join(APAC)).unwrap();
    let eu_before = pairs(&dir.path().join(EU));
    // u1 is in EU and APAC; only EU is named.
    let outcome = Erase::new(local_root(&dir), "user_id")
        .subjects(["u1"])
        .files([EU.to_string()])
        .execute()
        .await
        .unwrap();
    assert_eq!(outcome.files.len(), 1, "{outcome:?}");
    assert_eq!(outcome_of(&outcome, EU).status, FileStatus::Rewritten);
    assert_eq!(outcome_of(&outcome, EU).rows_removed, 10);
    assert_eq!(std::fs::read(dir.path().join(APAC)).unwrap(), apac_before);
    let mut expected = eu_before;
    expected.retain(|(u, _), _| u != "u1");
    assert_eq!(pairs(&dir.path().join(EU)), expected);

    let outcome = Erase::new(local_root(&dir), "user_id")
        .subjects(["u1"])
        .files(["date=2025-01-07/region=EU/missing.parquet".to_string()])
        .files([
            "date=2025-01-07/region=EU/.hidden.parquet".to_string(),
            "../escape.parquet".to_string(),
        ])
        .execute()
        .await
        .unwrap();
    assert_eq!(outcome.metrics.files_failed, 3, "{outcome:?}");
    assert_eq!(std::fs::read(dir.path().join(APAC)).unwrap(), apac_before);
}

#[tokio::test]
async fn temporary_objects_of_a_crashed_attempt_are_removed_before_the_next_one() {
    let dir = tempfile::tempdir().unwrap();
    three_file_lake(dir.path());
    let folder = dir.path().join("date=2025-01-07/region=EU");
    let uuid = uuid::Uuid::new_v4();
    let stale = [
        format!(".part-0.parquet.lethe-tmp-{uuid}"),
        format!("..part-0.parquet.crc.lethe-tmp-{uuid}"),
    ];
    // Not this file's: another file's temporary object, and a name that is not Lethe's.
    let others = [
        format!(".part-1.parquet.lethe-tmp-{uuid}"),
        ".part-0.parquet.lethe-tmp-not-a-uuid".to_string(),
    ];
    for name in stale.iter().chain(&others) {
        std::fs::write(folder.join(name), b"half a file").unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;

    // The whole-lake erasure finds them in its listing; the file holds none of the subjects.
    let outcome = Erase::new(local_root(&dir), "user_id")
        .subjects(["nobody"])
        .execute()
        .await
        .unwrap();
    assert_eq!(outcome_of(&outcome, EU).status, FileStatus::Unchanged);
    assert_eq!(outcome_of(&outcome, EU).stale_temps_removed, 2);
    for name in &stale {
        assert!(!folder.join(name).exists(), "{name} left");
    }
    for name in &others {
        assert!(folder.join(name).exists(), "{name} removed");
    }

    // A named file finds them by listing its folder.
    std::fs::write(folder.join(&stale[0]), b"half a file").unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let outcome = Erase::new(local_root(&dir), "user_id")
        .subjects(["u3"])
        .files([EU.to_string()])
        .execute()
        .await
        .unwrap();
    assert_eq!(outcome_of(&outcome, EU).status, FileStatus::Rewritten);
    assert_eq!(outcome_of(&outcome, EU).stale_temps_removed, 1);
    assert!(!folder.join(&stale[0]).exists());
}

#[test]
fn temporary_objects_are_matched_to_their_own_file_only() {
    let file = StorePath::from("d=1/part-0.parquet");
    let u = uuid::Uuid::new_v4();
    let is = |name: String| engine::is_temp_of(&StorePath::from(name), &file);
    assert!(is(format!("d=1/.part-0.parquet.lethe-tmp-{u}")));
    assert!(is(format!("d=1/..part-0.parquet.crc.lethe-tmp-{u}")));
    assert!(!is(format!("d=2/.part-0.parquet.lethe-tmp-{u}")));
    assert!(!is(format!(
        "d=1/.part-0.parquet.lethe-tmp-{u}.lethe-tmp-{u}"
    )));
    assert!(!is(format!("d=1/.part-0.parquet.x.lethe-tmp-{u}")));
}

/// Loads the three-file lake into a fresh in-memory root.
async fn memory_lake(part_size: usize) -> (LakeRoot, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    three_file_lake(dir.path());
    let root = LakeRoot::parse("memory://")
        .unwrap()
        .with_upload_part_size(part_size);
    for rel in [EU, US, APAC] {
        let bytes = std::fs::read(dir.path().join(rel)).unwrap();
        root.store()
            .put(&StorePath::from(rel), PutPayload::from(bytes))
            .await
            .unwrap();
    }
    (root, dir)
}

#[tokio::test]
async fn small_files_are_swapped_with_a_conditional_put_and_large_ones_uploaded_in_parts() {
    for (part_size, multipart) in [(1 << 20, false), (512, true)] {
        let (root, _dir) = memory_lake(part_size).await;
        let us_before = root.store().head(&StorePath::from(US)).await.unwrap();
        let outcome = Erase::new(root.clone(), "user_id")
            .subjects(["u1"])
            .execute()
            .await
            .unwrap();
        assert!(!outcome.has_failures(), "{outcome:?}");
        let eu = outcome_of(&outcome, EU);
        assert_eq!(eu.rows_removed, 10);
        if multipart {
            assert_eq!(eu.upload_parts, eu.bytes_written.div_ceil(512), "{eu:?}");
        } else {
            assert_eq!(eu.upload_parts, 0, "{eu:?}");
        }
        let us_after = root.store().head(&StorePath::from(US)).await.unwrap();
        assert_eq!(us_after.e_tag, us_before.e_tag);
        let files = root.list_files_and_temps().await.unwrap();
        assert_eq!(files.0.len(), 3);
        assert!(files.1.is_empty(), "temporary objects left: {:?}", files.1);
        let again = Erase::new(root, "user_id")
            .subjects(["u1"])
            .execute()
            .await
            .unwrap();
        assert_eq!(again.metrics.rows_removed, 0);
    }
}

#[tokio::test]
async fn the_conditional_swap_refuses_an_original_that_changed_since_the_listing() {
    let (root, _dir) = memory_lake(1 << 20).await;
    let listed = root.list_files().await.unwrap();
    let eu = listed.iter().find(|f| f.relative == EU).unwrap();
    let tmp = StorePath::from("date=2025-01-07/region=EU/.part-0.parquet.lethe-tmp-x");
    root.store()
        .put(&tmp, PutPayload::from_static(b"new"))
        .await
        .unwrap();
    // Someone else rewrites the original after the listing.
    root.store()
        .put(&eu.location, PutPayload::from_static(b"theirs"))
        .await
        .unwrap();
    let err = engine::swap(&root, eu, &tmp, Some(PutPayload::from_static(b"new")))
        .await
        .unwrap_err();
    assert!(matches!(err, LakeError::Changed { .. }), "{err}");
    let now = root.store().get(&eu.location).await.unwrap().bytes().await;
    assert_eq!(now.unwrap().as_ref(), b"theirs");
}
