//! The audit checkpoint sink on S3 with Object Lock, against moto (`.ci/s3.sh`); skipped
//! unless `LETHE_TEST_S3_ENDPOINT` is set.

use std::io::{Read, Write};

use lethe_core::audit::{AuditSigner, Checkpoint, CheckpointSink, CheckpointSinkOptions};
use lethe_core::lake::s3::LockMode;
use lethe_core::lake::{LakeRoot, S3Options, StoreOptions};
use object_store::ObjectStoreExt;
use object_store::path::Path;

use super::lake_s3::{create_bucket, s3_endpoint};

/// Creates a bucket with Object Lock enabled (`x-amz-bucket-object-lock-enabled: true`, which
/// also turns versioning on).
fn create_locked_bucket(endpoint: &str) -> String {
    let name = format!(
        "lethe-lock-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..16]
    );
    let addr = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut conn = std::net::TcpStream::connect(addr).expect("connect to the S3 endpoint");
    write!(
        conn,
        "PUT /{name} HTTP/1.1\r\nHost: {addr}\r\nx-amz-bucket-object-lock-enabled: true\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).unwrap();
    let status = response.lines().next().unwrap_or_default();
    assert!(status.contains(" 200"), "creating bucket {name}: {status}");
    name
}

fn options(endpoint: &str, retention_days: Option<u32>) -> CheckpointSinkOptions {
    CheckpointSinkOptions {
        store: StoreOptions {
            s3: S3Options {
                endpoint: Some(endpoint.to_string()),
                ..S3Options::default()
            },
            upload_part_size: None,
        },
        retention_days,
    }
}

fn first_checkpoint() -> Checkpoint {
    let signer = AuditSigner::generate();
    Checkpoint::sign(&signer, None, 1000, &"ab".repeat(32), chrono::Utc::now())
}

#[tokio::test]
async fn checkpoints_on_a_bucket_with_object_lock_are_locked_and_cannot_be_deleted() {
    let Some(endpoint) = s3_endpoint("checkpoints_on_a_bucket_with_object_lock_are_locked") else {
        return;
    };
    let bucket = create_locked_bucket(&endpoint);
    let url = format!("s3://{bucket}/lethe-audit");
    let sink = CheckpointSink::open_with(&url, &options(&endpoint, Some(30))).unwrap();
    let retention = sink.retention().await.expect("Object Lock detected");
    assert_eq!((retention.mode, retention.days), (LockMode::Compliance, 30));

    let checkpoint = first_checkpoint();
    sink.append(&checkpoint).await.unwrap();
    assert!(matches!(
        sink.append(&checkpoint).await,
        Err(lethe_core::audit::SinkError::AlreadyExists(1))
    ));
    assert_eq!(sink.list().await.unwrap(), vec![checkpoint]);

    // The object carries its own retention, 30 days from now.
    let root = LakeRoot::parse_with(&url, &options(&endpoint, None).store).unwrap();
    let s3 = root.s3().expect("an S3 root");
    let key = Path::from("lethe-audit/000000000001.json");
    let (mode, until) = s3
        .object_retention(&key)
        .await
        .unwrap()
        .expect("a retention on the checkpoint");
    assert_eq!(mode, "COMPLIANCE");
    let until = chrono::DateTime::parse_from_rfc3339(&until).unwrap();
    let days = (until.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_days();
    assert!((29..=30).contains(&days), "retained until {until}");

    // Deleting that version is refused.
    let version = root
        .store()
        .head(&key)
        .await
        .unwrap()
        .version
        .expect("a versioned bucket");
    let err = s3.delete_version(&key, &version).await.unwrap_err();
    assert!(err.to_string().contains("AccessDenied"), "{err}");
    assert!(root.store().head(&key).await.is_ok());
}

#[tokio::test]
async fn a_bucket_without_object_lock_is_reported_and_still_written() {
    let Some(endpoint) = s3_endpoint("a_bucket_without_object_lock_is_reported") else {
        return;
    };
    let bucket = create_bucket(&endpoint);
    let url = format!("s3://{bucket}/lethe-audit");
    let sink = CheckpointSink::open_with(&url, &options(&endpoint, None)).unwrap();
    assert_eq!(sink.retention().await, None);
    let checkpoint = first_checkpoint();
    sink.append(&checkpoint).await.unwrap();
    assert!(matches!(
        sink.append(&checkpoint).await,
        Err(lethe_core::audit::SinkError::AlreadyExists(1))
    ));
    assert_eq!(sink.list().await.unwrap(), vec![checkpoint]);
}

/// Sets the bucket's default retention rule (`PutObjectLockConfiguration`).
fn set_default_retention(endpoint: &str, bucket: &str, mode: &str, days: u32) {
    let body = format!(
        "<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule>\
         <DefaultRetention><Mode>{mode}</Mode><Days>{days}</Days></DefaultRetention></Rule>\
         </ObjectLockConfiguration>"
    );
    let addr = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut conn = std::net::TcpStream::connect(addr).expect("connect to the S3 endpoint");
    write!(
        conn,
        "PUT /{bucket}?object-lock HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).unwrap();
    let status = response.lines().next().unwrap_or_default();
    assert!(status.contains(" 200"), "setting the retention: {status}");
}

#[tokio::test]
async fn without_a_configured_period_the_bucket_default_retention_is_used() {
    let Some(endpoint) = s3_endpoint("without_a_configured_period_the_bucket_default_retention")
    else {
        return;
    };
    let bucket = create_locked_bucket(&endpoint);
    set_default_retention(&endpoint, &bucket, "GOVERNANCE", 5);
    let url = format!("s3://{bucket}/lethe-audit");
    let sink = CheckpointSink::open_with(&url, &options(&endpoint, None)).unwrap();
    let retention = sink.retention().await.expect("Object Lock detected");
    assert_eq!((retention.mode, retention.days), (LockMode::Governance, 5));
    sink.append(&first_checkpoint()).await.unwrap();
}
