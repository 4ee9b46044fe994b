//! The lake engine against a real S3 API server (moto, started by `.ci/s3.sh`), and crash tests
//! with the test-only failpoints.
//!
//! S3 tests skip (with a printed line) unless `LETHE_TEST_S3_ENDPOINT` is set:
//! `bash -c 'source .ci/s3.sh; trap stop_s3 EXIT; cargo test -p lethe-core --test it lake_s3'`.
//! Each test creates its own bucket and uploads a small demo lake to it. Credentials, region and
//! `AWS_ALLOW_HTTP` come from the environment the script exports; the endpoint is passed
//! through `S3Options` (the service's configuration path).
//!
//! The crash tests run a child process (this test binary, filtered to the ignored
//! `failpoint_child` test) with `LETHE_FAILPOINT` set, wait for its marker, `SIGKILL` it, and
//! check the lake: the old file or the complete new one, and a rerun that finishes the job.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path as FsPath;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_cast::display::{ArrayFormatter, FormatOptions};
use futures::TryStreamExt;
use lethe_core::demo::{DemoLakeOptions, generate_lake};
use lethe_core::lake::{
    CommitGuard, Erase, EraseOutcome, FileOutcome, FileStatus, LakeRoot, Locate, S3Options,
    StoreOptions,
};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

const TEMP_MARKER: &str = ".lethe-tmp-";

/// The S3 endpoint under test, or `None` (and a printed line) when the server is not running.
pub(crate) fn s3_endpoint(test: &str) -> Option<String> {
    match std::env::var("LETHE_TEST_S3_ENDPOINT") {
        Ok(e) if !e.is_empty() => Some(e),
        _ => {
            println!(
                "skipping {test}: LETHE_TEST_S3_ENDPOINT is not set (source .ci/s3.sh to run it)"
            );
            None
        }
    }
}

/// Creates a fresh bucket with a plain `PUT /<bucket>` (moto needs no signature for it).
pub(crate) fn create_bucket(endpoint: &str) -> String {
    let name = format!("lethe-{}", &uuid::Uuid::new_v4().simple().to_string()[..20]);
    let addr = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut conn = std::net::TcpStream::connect(addr).expect("connect to the S3 endpoint");
    write!(
        conn,
        "PUT /{name} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).unwrap();
    let status = response.lines().next().unwrap_or_default();
    assert!(status.contains(" 200"), "creating bucket {name}: {status}");
    name
}

/// A root on `s3://<bucket>/<prefix>` with the test endpoint and `part_size` bytes per part.
pub(crate) fn s3_root(
    endpoint: &str,
    bucket: &str,
    prefix: &str,
    part_size: Option<usize>,
) -> LakeRoot {
    let options = StoreOptions {
        s3: S3Options {
            endpoint: Some(endpoint.to_string()),
            ..S3Options::default()
        },
        upload_part_size: part_size,
    };
    LakeRoot::parse_with(&format!("s3://{bucket}/{prefix}"), &options).expect("S3 root")
}

/// Uploads every file under `dir` to `root`, keeping relative paths.
async fn upload(root: &LakeRoot, dir: &FsPath) {
    fn walk(dir: &FsPath, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                walk(&p, out)
            } else {
                out.push(p)
            }
        }
    }
    let mut files = Vec::new();
    walk(dir, &mut files);
    for f in files {
        let rel = f.strip_prefix(dir).unwrap().display().to_string();
        put(root, &rel, std::fs::read(&f).unwrap()).await;
    }
}

pub(crate) fn key(root: &LakeRoot, relative: &str) -> Path {
    Path::parse(relative)
        .unwrap()
        .parts()
        .fold(root.prefix().clone(), |p, part| p.join(part))
}

pub(crate) async fn put(root: &LakeRoot, relative: &str, bytes: Vec<u8>) {
    root.store()
        .put(&key(root, relative), PutPayload::from(bytes))
        .await
        .unwrap();
}

pub(crate) async fn get(root: &LakeRoot, relative: &str) -> bytes::Bytes {
    root.store()
        .get(&key(root, relative))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
}

async fn e_tag(root: &LakeRoot, relative: &str) -> Option<String> {
    root.store().head(&key(root, relative)).await.unwrap().e_tag
}

/// The multiset of a file's rows (every column formatted), and the `user_id` of each.
async fn rows(root: &LakeRoot, relative: &str) -> BTreeMap<(String, String), usize> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(get(root, relative).await)
        .unwrap()
        .build()
        .unwrap();
    let mut out = BTreeMap::new();
    for batch in reader {
        let batch = batch.unwrap();
        let user = batch.schema().index_of("user_id").unwrap();
        let options = FormatOptions::default();
        let formatters: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
            .collect();
        for i in 0..batch.num_rows() {
            let cells: Vec<String> = formatters.iter().map(|f| f.value(i).to_string()).collect();
            *out.entry((cells[user].clone(), cells.join("|")))
                .or_default() += 1;
        }
    }
    out
}

/// Every object key in the root's bucket holding a temporary-object marker.
pub(crate) async fn temp_objects(store: &Arc<dyn ObjectStore>) -> Vec<String> {
    store
        .list(None)
        .map_ok(|m| m.location.to_string())
        .try_filter(|k| futures::future::ready(k.contains(TEMP_MARKER)))
        .try_collect()
        .await
        .unwrap()
}

pub(crate) fn outcome_of<'a>(outcome: &'a EraseOutcome, relative: &str) -> &'a FileOutcome {
    outcome
        .files
        .iter()
        .find(|f| f.relative == relative)
        .unwrap_or_else(|| panic!("no outcome for {relative}: {outcome:?}"))
}

/// A small demo lake: 4 days × EU, US × 2 files, 40 subjects.
fn small_lake(dir: &FsPath) -> lethe_core::demo::DemoLakeSummary {
    let opts = DemoLakeOptions {
        subjects: 40,
        days: 4,
        regions: vec!["EU".into(), "US".into()],
        events_per_subject_per_day: 2.0,
        row_group_rows: 16,
        files_per_partition: 2,
        ..DemoLakeOptions::default()
    };
    generate_lake(dir, &opts).expect("demo lake")
}

/// The subject with the most rows.
fn busiest(summary: &lethe_core::demo::DemoLakeSummary) -> String {
    let s = summary.subjects.iter().max_by_key(|s| s.rows).unwrap();
    s.user_id.clone()
}

async fn s3_lake(
    endpoint: &str,
    part_size: Option<usize>,
) -> (LakeRoot, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let summary = small_lake(dir.path());
    let bucket = create_bucket(endpoint);
    let root = s3_root(endpoint, &bucket, "events", part_size);
    upload(&root, dir.path()).await;
    (root, busiest(&summary), dir)
}

#[tokio::test]
async fn an_s3_lake_is_listed_located_and_erased_exactly() {
    let Some(endpoint) = s3_endpoint("an_s3_lake_is_listed_located_and_erased_exactly") else {
        return;
    };
    let (root, subject, dir) = s3_lake(&endpoint, None).await;
    let files = root.list_files().await.unwrap();
    let local = lethe_core::lake::LakeRoot::parse(&dir.path().display().to_string())
        .unwrap()
        .list_files()
        .await
        .unwrap();
    let names = |fs: &[lethe_core::lake::DataFile]| {
        fs.iter().map(|f| f.relative.clone()).collect::<Vec<_>>()
    };
    assert_eq!(names(&files), names(&local));
    assert!(
        files
            .iter()
            .all(|f| f.partition.len() == 2 && f.e_tag.is_some())
    );

    let located = Locate::new(root.clone(), "user_id")
        .subjects([subject.clone()])
        .execute()
        .await
        .unwrap();
    assert!(located.failures.is_empty(), "{:?}", located.failures);
    let holding: Vec<String> = located
        .files
        .iter()
        .map(|m| m.file.relative.clone())
        .collect();
    let subject_rows: u64 = located.files.iter().map(|m| m.rows).sum();
    assert!(!holding.is_empty() && holding.len() < files.len());

    let mut before = BTreeMap::new();
    for f in &files {
        before.insert(
            f.relative.clone(),
            (rows(&root, &f.relative).await, f.e_tag.clone()),
        );
    }
    let outcome = Erase::new(root.clone(), "user_id")
        .subjects([subject.clone()])
        .execute()
        .await
        .unwrap();
    assert!(!outcome.has_failures(), "{outcome:?}");
    assert_eq!(outcome.metrics.rows_removed, subject_rows);
    assert_eq!(outcome.metrics.files_rewritten, holding.len() as u64);
    for f in &files {
        let (old_rows, old_tag) = &before[&f.relative];
        let done = outcome_of(&outcome, &f.relative);
        if holding.contains(&f.relative) {
            assert_eq!(done.status, FileStatus::Rewritten);
            assert_eq!(done.upload_parts, 0, "small files go out with one PUT");
            let mut expected = old_rows.clone();
            expected.retain(|(user, _), _| *user != subject);
            assert_eq!(rows(&root, &f.relative).await, expected, "{}", f.relative);
        } else {
            assert_eq!(done.status, FileStatus::Unchanged);
            assert_eq!(&e_tag(&root, &f.relative).await, old_tag, "{}", f.relative);
        }
    }
    assert_eq!(temp_objects(root.store()).await, Vec::<String>::new());
    let again = Locate::new(root, "user_id")
        .subjects([subject])
        .execute()
        .await
        .unwrap();
    assert!(again.files.is_empty());
}

#[tokio::test]
async fn a_corrupt_object_on_s3_is_refused_and_left_untouched() {
    let Some(endpoint) = s3_endpoint("a_corrupt_object_on_s3_is_refused_and_left_untouched") else {
        return;
    };
    let (root, subject, _dir) = s3_lake(&endpoint, None).await;
    let corrupt = "date=2025-01-01/region=EU/part-9999.parquet";
    let mut bytes = b"PAR1".to_vec();
    bytes.extend_from_slice(&[0xAB; 200]);
    bytes.extend_from_slice(&100u32.to_le_bytes());
    bytes.extend_from_slice(b"PAR1");
    put(&root, corrupt, bytes.clone()).await;
    let tag = e_tag(&root, corrupt).await;
    let outcome = Erase::new(root.clone(), "user_id")
        .subjects([subject])
        .execute()
        .await
        .unwrap();
    let FileStatus::Failed { error } = &outcome_of(&outcome, corrupt).status else {
        panic!("corrupt object not refused: {outcome:?}");
    };
    assert!(error.contains("part-9999"), "{error}");
    assert_eq!(outcome.metrics.files_failed, 1);
    assert!(outcome.metrics.files_rewritten > 0);
    assert_eq!(get(&root, corrupt).await.as_ref(), &bytes[..]);
    assert_eq!(e_tag(&root, corrupt).await, tag);
    assert_eq!(temp_objects(root.store()).await, Vec::<String>::new());
}

struct Refuse;

#[async_trait::async_trait]
impl CommitGuard for Refuse {
    async fn may_commit(&self, _file: &str) -> Result<(), String> {
        Err("lease taken over by another worker".into())
    }
}

#[tokio::test]
async fn a_refusing_commit_guard_on_s3_leaves_every_original_untouched() {
    let Some(endpoint) =
        s3_endpoint("a_refusing_commit_guard_on_s3_leaves_every_original_untouched")
    else {
        return;
    };
    let (root, subject, _dir) = s3_lake(&endpoint, None).await;
    let files = root.list_files().await.unwrap();
    let outcome = Erase::new(root.clone(), "user_id")
        .subjects([subject])
        .commit_guard(Arc::new(Refuse))
        .execute()
        .await
        .unwrap();
    assert_eq!(outcome.metrics.files_rewritten, 0);
    assert!(outcome.metrics.files_failed > 0);
    for f in &files {
        match &outcome_of(&outcome, &f.relative).status {
            FileStatus::Failed { error } => assert!(error.contains("lease taken over"), "{error}"),
            FileStatus::Unchanged => {}
            FileStatus::Rewritten => panic!("{} rewritten despite the guard", f.relative),
        }
        assert_eq!(e_tag(&root, &f.relative).await, f.e_tag, "{}", f.relative);
    }
    assert_eq!(temp_objects(root.store()).await, Vec::<String>::new());
}

#[tokio::test]
async fn files_on_s3_touches_only_the_named_file_and_removes_its_stale_temps() {
    let Some(endpoint) = s3_endpoint("files_on_s3_touches_only_the_named_file") else {
        return;
    };
    let (root, subject, _dir) = s3_lake(&endpoint, None).await;
    let located = Locate::new(root.clone(), "user_id")
        .subjects([subject.clone()])
        .execute()
        .await
        .unwrap();
    assert!(located.files.len() >= 2, "the subject should span files");
    let (named, other) = (&located.files[0].file, &located.files[1].file);
    let name = named.location.filename().unwrap().to_string();
    let stale = format!(
        "{}/.{name}{TEMP_MARKER}{}",
        named.relative.rsplit_once('/').unwrap().0,
        uuid::Uuid::new_v4()
    );
    put(&root, &stale, b"left by a crashed attempt".to_vec()).await;
    // S3 stamps whole seconds: make the temporary object clearly older than the attempt.
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let outcome = Erase::new(root.clone(), "user_id")
        .subjects([subject.clone()])
        .files([named.relative.clone()])
        .execute()
        .await
        .unwrap();
    assert_eq!(outcome.files.len(), 1, "{outcome:?}");
    let done = outcome_of(&outcome, &named.relative);
    assert_eq!(done.status, FileStatus::Rewritten);
    assert_eq!(done.rows_removed, located.files[0].rows);
    assert_eq!(done.stale_temps_removed, 1);
    assert_eq!(e_tag(&root, &other.relative).await, other.e_tag);
    assert!(
        rows(&root, &other.relative)
            .await
            .keys()
            .any(|(u, _)| *u == subject)
    );
    assert_eq!(temp_objects(root.store()).await, Vec::<String>::new());
}

#[tokio::test]
async fn the_s3_server_honours_the_conditional_put_of_the_swap() {
    let Some(endpoint) = s3_endpoint("the_s3_server_honours_the_conditional_put_of_the_swap")
    else {
        return;
    };
    let bucket = create_bucket(&endpoint);
    let root = s3_root(&endpoint, &bucket, "", None);
    let location = Path::from("f.parquet");
    let first = root
        .store()
        .put(&location, PutPayload::from_static(b"v1"))
        .await
        .unwrap();
    root.store()
        .put(&location, PutPayload::from_static(b"v2 by someone else"))
        .await
        .unwrap();
    let stale = PutOptions {
        mode: PutMode::Update(UpdateVersion {
            e_tag: first.e_tag,
            version: None,
        }),
        ..PutOptions::default()
    };
    let err = root
        .store()
        .put_opts(&location, PutPayload::from_static(b"ours"), stale)
        .await
        .unwrap_err();
    assert!(
        matches!(err, object_store::Error::Precondition { .. }),
        "{err}"
    );
    assert_eq!(
        get(&root, "f.parquet").await.as_ref(),
        b"v2 by someone else"
    );
}

#[tokio::test]
async fn a_file_larger_than_the_part_size_is_rewritten_through_a_multipart_upload() {
    let Some(endpoint) = s3_endpoint("a_file_larger_than_the_part_size_is_rewritten") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let summary = generate_lake(
        dir.path(),
        &DemoLakeOptions {
            subjects: 90_000,
            days: 1,
            regions: vec!["EU".into()],
            events_per_subject_per_day: 1.0,
            ..DemoLakeOptions::default()
        },
    )
    .unwrap();
    assert_eq!(summary.files, 1);
    let part = 5 * 1024 * 1024;
    assert!(
        summary.bytes > part as u64 + 512 * 1024,
        "demo file of {} bytes is not larger than one part",
        summary.bytes
    );
    let bucket = create_bucket(&endpoint);
    let root = s3_root(&endpoint, &bucket, "big", Some(part));
    upload(&root, dir.path()).await;
    let file = root.list_files().await.unwrap().remove(0);
    let subject = busiest(&summary);
    let before = rows(&root, &file.relative).await;

    let outcome = Erase::new(root.clone(), "user_id")
        .subjects([subject.clone()])
        .execute()
        .await
        .unwrap();
    let done = outcome_of(&outcome, &file.relative);
    assert_eq!(done.status, FileStatus::Rewritten, "{outcome:?}");
    assert!(done.upload_parts >= 2, "{done:?}");
    assert_eq!(done.upload_parts, done.bytes_written.div_ceil(part as u64));
    let mut expected = before;
    expected.retain(|(u, _), _| *u != subject);
    assert_eq!(rows(&root, &file.relative).await, expected);
    assert_eq!(temp_objects(root.store()).await, Vec::<String>::new());
}

// ---- crash tests with failpoints ------------------------------------------------------------

/// Runs in the child process of a crash test (ignored otherwise): an erasure of
/// `LETHE_CRASH_SUBJECT` on `LETHE_CRASH_ROOT` that freezes at `LETHE_FAILPOINT`.
#[tokio::test]
#[ignore = "child process of the crash tests"]
async fn failpoint_child() {
    let (Ok(url), Ok(subject)) = (
        std::env::var("LETHE_CRASH_ROOT"),
        std::env::var("LETHE_CRASH_SUBJECT"),
    ) else {
        return;
    };
    let options = StoreOptions {
        s3: S3Options {
            endpoint: std::env::var("LETHE_TEST_S3_ENDPOINT").ok(),
            ..S3Options::default()
        },
        upload_part_size: None,
    };
    let root = LakeRoot::parse_with(&url, &options).unwrap();
    Erase::new(root, "user_id")
        .subjects([subject])
        .concurrency(1)
        .execute()
        .await
        .unwrap();
}

/// Runs the erasure in a child process frozen at `failpoint`, kills it once the marker is
/// there, and returns (the file's rows after the crash, the rerun's outcome).
async fn crash_at(
    root: &LakeRoot,
    url: &str,
    relative: &str,
    subject: &str,
    failpoint: &str,
) -> (BTreeMap<(String, String), usize>, EraseOutcome) {
    let marker_dir = tempfile::tempdir().unwrap();
    let marker = marker_dir.path().join("reached");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "lake_s3::failpoint_child",
            "--ignored",
            "--nocapture",
        ])
        .env("LETHE_FAILPOINT", failpoint)
        .env("LETHE_FAILPOINT_MARKER", &marker)
        .env("LETHE_CRASH_ROOT", url)
        .env("LETHE_CRASH_SUBJECT", subject)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !marker.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("child exited ({status}) before reaching {failpoint}");
        }
        assert!(Instant::now() < deadline, "{failpoint} not reached");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), failpoint);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let after_crash = rows(root, relative).await;
    // S3 stamps whole seconds; the rerun must be clearly later than the crashed attempt.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let rerun = Erase::new(root.clone(), "user_id")
        .subjects([subject.to_string()])
        .files([relative.to_string()])
        .execute()
        .await
        .unwrap();
    (after_crash, rerun)
}

/// For each failpoint: the file after the kill is the old one (mid-write, before the swap) or
/// the complete new one (after the swap), and a rerun leaves the new one and no temporary
/// object.
async fn crash_tests(root: LakeRoot, url: &str, dir: &FsPath) {
    let summary = small_lake(dir);
    upload(&root, dir).await;
    let subject = busiest(&summary);
    let located = Locate::new(root.clone(), "user_id")
        .subjects([subject.clone()])
        .execute()
        .await
        .unwrap();
    let mut targets = located.files.iter().map(|m| m.file.relative.clone());
    for failpoint in [
        "rewrite.mid_write",
        "rewrite.before_swap",
        "rewrite.after_swap",
    ] {
        // Each failpoint on a file that still holds the subject.
        let relative = targets.next().expect("enough files holding the subject");
        let before = rows(&root, &relative).await;
        let mut after = before.clone();
        after.retain(|(u, _), _| *u != subject);
        let (after_crash, rerun) = crash_at(&root, url, &relative, &subject, failpoint).await;
        let done = outcome_of(&rerun, &relative);
        if failpoint == "rewrite.after_swap" {
            assert_eq!(after_crash, after, "{failpoint}: new file not complete");
            assert_eq!(done.status, FileStatus::Unchanged, "{failpoint}: {done:?}");
        } else {
            assert_eq!(after_crash, before, "{failpoint}: original changed");
            assert_eq!(done.status, FileStatus::Rewritten, "{failpoint}: {done:?}");
            assert_eq!(rows(&root, &relative).await, after, "{failpoint}");
        }
        if failpoint == "rewrite.before_swap" {
            assert_eq!(done.stale_temps_removed, 1, "{failpoint}: {done:?}");
        }
        assert_eq!(
            temp_objects(root.store()).await,
            Vec::<String>::new(),
            "{failpoint}"
        );
    }
}

#[tokio::test]
async fn a_killed_rewrite_on_a_local_lake_leaves_the_old_or_the_new_file() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let source = dir.path().join("source");
    std::fs::create_dir_all(&lake).unwrap();
    let url = lake.display().to_string();
    crash_tests(LakeRoot::parse(&url).unwrap(), &url, &source).await;
}

#[tokio::test]
async fn a_killed_rewrite_on_s3_leaves_the_old_or_the_new_file() {
    let Some(endpoint) = s3_endpoint("a_killed_rewrite_on_s3_leaves_the_old_or_the_new_file")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let bucket = create_bucket(&endpoint);
    let url = format!("s3://{bucket}/events");
    crash_tests(
        s3_root(&endpoint, &bucket, "events", None),
        &url,
        dir.path(),
    )
    .await;
}
