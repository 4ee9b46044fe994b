//! The request lifecycle says what it did: each operation returns the request and its events
//! in order (filing, approval by policy, the job queued, the data key destroyed, a replay).

use std::sync::Arc;
use std::time::Duration;

use lethe_core::audit::Pseudonymizer;
use lethe_core::config::ApprovalPolicy;
use lethe_core::domain::{RequestStatus, RequestType, Role};
use lethe_core::keyring::{Kek, Keyring, SubjectHasher};
use lethe_core::requests::{self, Cancel, FileRequest, Filer, LifecycleEvent, Policies};
use lethe_core::store::{JobKind, Store};
use secrecy::SecretString;

fn policies(review_access: bool) -> Policies {
    Policies {
        access: if review_access {
            ApprovalPolicy::Review
        } else {
            ApprovalPolicy::Auto
        },
        portability: ApprovalPolicy::Review,
        rectification: ApprovalPolicy::Review,
        erasure: ApprovalPolicy::Auto,
        restriction: ApprovalPolicy::Review,
        erasure_cooling_off: Duration::ZERO,
        erasure_batch_window: Duration::ZERO,
        max_attempts: 3,
        max_open_per_type: 3,
        export_ttl: Duration::from_secs(3600),
        tables: None,
    }
}

fn admin() -> Filer {
    Filer {
        actor: "user:admin".into(),
        role: Role::Admin,
        subject_id: None,
        issuer: None,
    }
}

fn filing(request_type: RequestType, key: Option<&str>) -> FileRequest {
    FileRequest {
        request_type,
        subject_id: Some("u-1042".into()),
        verification_note: Some("passport checked".into()),
        dataset_id: None,
        changes: None,
        idempotency_key: key.map(str::to_string),
    }
}

#[tokio::test]
async fn each_operation_returns_what_it_did_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("lethe.db").display());
    let store = Arc::new(Store::connect(&SecretString::from(url), 2).await.unwrap());
    let keyring = Keyring::new(
        Kek::generate(),
        store.clone(),
        SubjectHasher::new(&[7u8; 32]).unwrap(),
    );
    let pseudonyms = Pseudonymizer::new(SecretString::from(
        "a pseudonym key of enough length".to_string(),
    ));

    // Auto-approved access: filed, approved by the policy, its job queued to run now.
    let auto = policies(false);
    let filed = requests::file(
        &store,
        &keyring,
        &pseudonyms,
        &auto,
        &admin(),
        filing(RequestType::Access, Some("k-1")),
    )
    .await
    .unwrap();
    assert_eq!(
        filed.events,
        vec![
            LifecycleEvent::Filed,
            LifecycleEvent::Approved {
                by: "policy:auto".into()
            },
            LifecycleEvent::JobQueued {
                kind: JobKind::Access,
                run_at: None
            },
        ]
    );
    assert_eq!(filed.request.status, RequestStatus::Approved);
    assert!(!filed.replayed());

    // The same Idempotency-Key again: the first request, and nothing else happened.
    let again = requests::file(
        &store,
        &keyring,
        &pseudonyms,
        &auto,
        &admin(),
        filing(RequestType::Access, Some("k-1")),
    )
    .await
    .unwrap();
    assert_eq!(again.events, vec![LifecycleEvent::Replayed]);
    assert!(again.replayed());
    assert_eq!(again.request.id, filed.request.id);

    // Auto-approved erasure without cooling-off: the key goes at approval (first phase).
    let erased = requests::file(
        &store,
        &keyring,
        &pseudonyms,
        &auto,
        &admin(),
        filing(RequestType::Erasure, None),
    )
    .await
    .unwrap();
    assert_eq!(erased.events.len(), 4, "{:?}", erased.events);
    assert_eq!(erased.events[0], LifecycleEvent::Filed);
    assert!(matches!(
        erased.events[2],
        LifecycleEvent::JobQueued {
            kind: JobKind::Erasure,
            run_at: Some(_)
        }
    ));
    assert_eq!(erased.events[3], LifecycleEvent::KeyDestroyed);
    assert!(erased.request.key_destroyed_at.is_some());

    // Under review: filed and awaiting approval; a cancellation says so.
    let review = policies(true);
    let pending = requests::file(
        &store,
        &keyring,
        &pseudonyms,
        &review,
        &admin(),
        filing(RequestType::Access, Some("k-2")),
    )
    .await
    .unwrap();
    assert_eq!(
        pending.events,
        vec![LifecycleEvent::Filed, LifecycleEvent::AwaitingApproval]
    );
    let cancelled = requests::cancel(
        &store,
        &pending.request,
        Cancel {
            actor: "user:admin".into(),
            by_subject: false,
            reason: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(cancelled.events, vec![LifecycleEvent::Cancelled]);
    assert_eq!(cancelled.request.status, RequestStatus::Cancelled);
}
