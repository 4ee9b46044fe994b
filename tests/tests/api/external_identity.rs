//! Identity from the company's own app: a subject calls Lethe with a JWT that a trusted issuer
//! signed (RS256, ES256 or EdDSA), whose `sub` is their subject id.
//!
//! Keys are made in the tests (Ed25519 with `ed25519-dalek`, RSA 2048 with `rsa`), written to a
//! JWK Set file or served from a local JWK Set server; nothing is fetched from the internet.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use lethe_core::config::{JwtAlgorithm, TrustedIssuerSettings};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Spawn, TestApp, assert_problem, spawn_app_with};

/// Issuer with a JWK Set file: two Ed25519 keys (`ed-1`, `ed-2`), one RSA key (`rsa-1`) and
/// one P-256 key (`ec-1`).
const APP: &str = "https://app.example.com/";
/// Issuer with one RSA public key in PEM.
const PEM_ISSUER: &str = "https://pem.example.com/";
/// Issuer with a JWK Set served over HTTP.
const REMOTE: &str = "https://remote.example.com/";
const AUDIENCE: &str = "lethe";

struct EdKey {
    kid: String,
    encoding: EncodingKey,
    jwk: Value,
}

fn ed_key(kid: &str) -> EdKey {
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    use rand::RngCore;
    let mut seed = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut seed);
    let signing = ed25519_dalek::SigningKey::from_bytes(&seed);
    let der = signing.to_pkcs8_der().unwrap();
    EdKey {
        kid: kid.into(),
        encoding: EncodingKey::from_ed_der(der.as_bytes()),
        jwk: json!({
            "kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(signing.verifying_key().as_bytes()),
        }),
    }
}

struct RsaKey {
    encoding: EncodingKey,
    jwk: Value,
    public_pem: String,
}

/// One RSA 2048 key for every test (generating one takes a moment).
static RSA: LazyLock<RsaKey> = LazyLock::new(|| {
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::pkcs8::{EncodePublicKey, LineEnding};
    use rsa::traits::PublicKeyParts;
    let private = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
    let public = private.to_public_key();
    RsaKey {
        encoding: EncodingKey::from_rsa_der(private.to_pkcs1_der().unwrap().as_bytes()),
        jwk: json!({
            "kty": "RSA", "use": "sig", "kid": "rsa-1",
            "n": URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()),
            "e": URL_SAFE_NO_PAD.encode(public.e().to_bytes_be()),
        }),
        public_pem: public.to_public_key_pem(LineEnding::LF).unwrap(),
    }
});

/// One P-256 key for every test (`ec-1`).
static EC: LazyLock<(EncodingKey, Value)> = LazyLock::new(|| {
    use p256::pkcs8::EncodePrivateKey;
    let signing = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
    let point = signing.verifying_key().to_encoded_point(false);
    (
        EncodingKey::from_ec_der(signing.to_pkcs8_der().unwrap().as_bytes()),
        json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": "ec-1",
            "x": URL_SAFE_NO_PAD.encode(point.x().unwrap()),
            "y": URL_SAFE_NO_PAD.encode(point.y().unwrap()),
        }),
    )
});

fn issuer(name: &str) -> TrustedIssuerSettings {
    TrustedIssuerSettings {
        issuer: name.into(),
        audience: AUDIENCE.into(),
        jwks_file: None,
        jwks_url: None,
        public_key_pem: None,
        algorithm: None,
        leeway_s: 60,
        subject_claim: "sub".into(),
    }
}

/// The company's app: its keys, and Lethe started trusting it.
struct Company {
    app: TestApp,
    ed1: EdKey,
    ed2: EdKey,
    /// Holds the JWK Set file.
    #[allow(dead_code)]
    dir: tempfile::TempDir,
}

async fn company() -> Company {
    let (ed1, ed2) = (ed_key("ed-1"), ed_key("ed-2"));
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    let set = json!({ "keys": [ed1.jwk, ed2.jwk, RSA.jwk, EC.1] });
    std::fs::write(&jwks, set.to_string()).unwrap();
    let mut from_file = issuer(APP);
    from_file.jwks_file = Some(jwks);
    let mut from_pem = issuer(PEM_ISSUER);
    from_pem.public_key_pem = Some(RSA.public_pem.clone());
    from_pem.algorithm = Some(JwtAlgorithm::RS256);
    let app = spawn_app_with(Spawn {
        subjects: 4,
        days: 2,
        trusted_issuers: vec![from_file, from_pem],
        ..Spawn::default()
    })
    .await;
    Company { app, ed1, ed2, dir }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Claims of a valid token of `iss` for `sub`, valid five minutes.
fn claims(iss: &str, sub: &str) -> Value {
    json!({ "iss": iss, "aud": AUDIENCE, "sub": sub, "iat": now(), "exp": now() + 300 })
}

fn sign(alg: Algorithm, kid: Option<&str>, claims: &Value, key: &EncodingKey) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn ed_token(key: &EdKey, claims: &Value) -> String {
    sign(Algorithm::EdDSA, Some(&key.kid), claims, &key.encoding)
}

/// A JWT with a header and claims as given, and `signature` as the signature part.
fn raw_token(header: &Value, claims: &Value, signature: &str) -> String {
    format!(
        "{}.{}.{signature}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

async fn me(app: &TestApp, token: &str) -> reqwest::Response {
    app.client
        .get(app.url("/v1/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_subject_of_the_company_app_files_an_access_request_and_reads_it() {
    let Company { app, ed1, .. } = company().await;
    let sub = app.summary.subjects[0].user_id.clone();
    let token = ed_token(&ed1, &claims(APP, &sub));

    let response = app.file_request(&token, &json!({ "type": "access" })).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let filed: Value = response.json().await.unwrap();
    assert_eq!(filed["subject_id"], json!(sub));
    assert_eq!(filed["type"], "access");
    // The request records how identity was verified.
    assert_eq!(filed["verification_note"], json!(format!("jwt:{APP}")));
    let filed_by = filed["filed_by"].as_str().unwrap();
    assert!(
        filed_by.starts_with(&format!("external:{APP}#")),
        "{filed_by}"
    );
    assert!(
        !filed_by.contains(&sub),
        "no subject id in actors: {filed_by}"
    );

    let id = filed["id"].as_str().unwrap();
    let response = app.get_request(&token, id).await;
    assert_eq!(response.status(), StatusCode::OK);
    let read: Value = response.json().await.unwrap();
    assert_eq!(read["id"], json!(id));
    assert_eq!(read["verification_note"], json!(format!("jwt:{APP}")));
    let mine: Vec<Value> = app.list_requests(&token).await.json().await.unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["id"], json!(id));

    // The admin sees the same record of verification.
    let admin_view: Value = app
        .get_request(&app.admin_token, id)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(admin_view["verification_note"], json!(format!("jwt:{APP}")));

    // The audit entry names the issuer and a pseudonymous actor, never the subject id.
    let entries: Vec<Value> = app
        .client
        .get(app.url("/v1/audit"))
        .bearer_auth(&app.auditor_token)
        .query(&[("action", "request.created")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["actor"], json!(filed_by));
    assert_eq!(entries[0]["details"]["identity_verified_by_issuer"], APP);
    assert_eq!(entries[0]["details"]["identity_verified_by_admin"], false);
    assert!(!entries[0].to_string().contains(&sub), "{}", entries[0]);
}

#[tokio::test]
async fn an_external_subject_sees_only_their_own_requests_and_files_only_for_themselves() {
    let Company { app, ed1, .. } = company().await;
    let (ana, bob) = (
        app.summary.subjects[0].user_id.clone(),
        app.summary.subjects[1].user_id.clone(),
    );
    let bobs = app
        .file_request(
            &app.admin_token,
            &json!({ "type": "access", "subject_id": bob, "verification_note": "passport seen" }),
        )
        .await;
    assert_eq!(bobs.status(), StatusCode::CREATED);
    let bobs: Value = bobs.json().await.unwrap();
    assert_eq!(bobs["verification_note"], "passport seen");

    let ana_token = ed_token(&ed1, &claims(APP, &ana));
    let response = app
        .get_request(&ana_token, bobs["id"].as_str().unwrap())
        .await;
    assert_problem(response, StatusCode::NOT_FOUND, "not_found").await;
    let listed: Vec<Value> = app.list_requests(&ana_token).await.json().await.unwrap();
    assert!(listed.is_empty(), "{listed:?}");
    let response = app
        .file_request(&ana_token, &json!({ "type": "erasure", "subject_id": bob }))
        .await;
    assert_problem(response, StatusCode::FORBIDDEN, "forbidden").await;

    // No admin powers.
    let id = bobs["id"].as_str().unwrap();
    assert_problem(
        app.approve(&ana_token, id).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    let response = app
        .client
        .get(app.url("/v1/users"))
        .bearer_auth(&ana_token)
        .send()
        .await
        .unwrap();
    assert_problem(response, StatusCode::FORBIDDEN, "forbidden").await;
}

#[tokio::test]
async fn me_says_who_the_issuer_vouched_for() {
    let Company { app, ed1, .. } = company().await;
    let sub = app.summary.subjects[0].user_id.clone();
    let response = me(&app, &ed_token(&ed1, &claims(APP, &sub))).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["role"], "subject");
    assert_eq!(body["subject_id"], json!(sub));
    assert_eq!(body["issuer"], APP);
    assert_eq!(body["verification"], json!(format!("jwt:{APP}")));
    assert!(body["id"].as_str().unwrap().starts_with("external:"));
    assert!(body.get("email").is_none());
    // Lethe accounts still get their account.
    let body: Value = me(&app, &app.admin_token).await.json().await.unwrap();
    assert_eq!(body["email"], "admin@example.com");
}

#[tokio::test]
async fn rs256_and_es256_tokens_verify_with_a_jwk_set_key_or_a_pem() {
    let Company { app, .. } = company().await;
    let sub = app.summary.subjects[2].user_id.clone();
    let from_set = sign(
        Algorithm::RS256,
        Some("rsa-1"),
        &claims(APP, &sub),
        &RSA.encoding,
    );
    let from_pem = sign(
        Algorithm::RS256,
        None,
        &claims(PEM_ISSUER, &sub),
        &RSA.encoding,
    );
    let es256 = sign(Algorithm::ES256, Some("ec-1"), &claims(APP, &sub), &EC.0);
    for (token, issuer) in [(from_set, APP), (from_pem, PEM_ISSUER), (es256, APP)] {
        let response = app.file_request(&token, &json!({ "type": "access" })).await;
        assert_eq!(response.status(), StatusCode::CREATED, "{issuer}");
        let filed: Value = response.json().await.unwrap();
        assert_eq!(filed["verification_note"], json!(format!("jwt:{issuer}")));
        assert_eq!(filed["subject_id"], json!(sub));
    }
}

#[tokio::test]
async fn a_jwk_set_with_two_keys_picks_the_key_by_kid() {
    let Company { app, ed1, ed2, .. } = company().await;
    let sub = app.summary.subjects[0].user_id.clone();
    let c = claims(APP, &sub);
    // Each key verifies tokens that name it.
    for token in [ed_token(&ed1, &c), ed_token(&ed2, &c)] {
        assert_eq!(me(&app, &token).await.status(), StatusCode::OK);
    }
    // Signed by ed-1 but naming ed-2: checked against ed-2, so refused.
    let wrong_kid = sign(Algorithm::EdDSA, Some("ed-2"), &c, &ed1.encoding);
    assert_problem(
        me(&app, &wrong_kid).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    // A kid the set does not have.
    let unknown = sign(Algorithm::EdDSA, Some("ed-9"), &c, &ed1.encoding);
    assert_problem(
        me(&app, &unknown).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    // No kid while two Ed25519 keys could apply: ambiguous, refused.
    let no_kid = sign(Algorithm::EdDSA, None, &c, &ed1.encoding);
    let problem = assert_problem(
        me(&app, &no_kid).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    assert!(
        problem["detail"].as_str().unwrap().contains("no kid"),
        "{problem}"
    );
}

#[tokio::test]
async fn tokens_that_do_not_verify_get_401() {
    let Company { app, ed1, .. } = company().await;
    let sub = app.summary.subjects[0].user_id.clone();
    let valid = claims(APP, &sub);
    let with = |patch: Value| {
        let mut c = valid.clone();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    };
    let stranger = ed_key("ed-1");
    let cases: Vec<(&str, String)> = vec![
        (
            "wrong audience",
            ed_token(&ed1, &with(json!({ "aud": "another-service" }))),
        ),
        ("no audience", ed_token(&ed1, &with(json!({ "aud": null })))),
        (
            "untrusted issuer",
            ed_token(&ed1, &with(json!({ "iss": "https://evil.example.com/" }))),
        ),
        (
            "Lethe's own issuer",
            ed_token(&ed1, &with(json!({ "iss": "lethe" }))),
        ),
        (
            "expired beyond the leeway",
            ed_token(&ed1, &with(json!({ "exp": now() - 3600 }))),
        ),
        ("no expiry", ed_token(&ed1, &with(json!({ "exp": null })))),
        (
            "not yet valid",
            ed_token(&ed1, &with(json!({ "nbf": now() + 3600 }))),
        ),
        ("signed by another key", ed_token(&stranger, &valid)),
        ("no subject", ed_token(&ed1, &with(json!({ "sub": null })))),
        (
            "a subject that is not a subject id",
            ed_token(&ed1, &with(json!({ "sub": " padded " }))),
        ),
        (
            "alg none",
            raw_token(&json!({ "alg": "none", "typ": "JWT" }), &valid, ""),
        ),
        (
            "alg none with the issuer's kid",
            raw_token(&json!({ "alg": "none", "kid": "ed-1" }), &valid, ""),
        ),
        (
            // Algorithm confusion: HMAC keyed with the issuer's public key, which anyone has.
            "HS256 keyed with the issuer's public key PEM",
            sign(
                Algorithm::HS256,
                None,
                &claims(PEM_ISSUER, &sub),
                &EncodingKey::from_secret(RSA.public_pem.as_bytes()),
            ),
        ),
        (
            "HS256 keyed with a JWK's public bytes",
            sign(
                Algorithm::HS256,
                Some("ed-1"),
                &valid,
                &EncodingKey::from_secret(
                    &URL_SAFE_NO_PAD
                        .decode(ed1.jwk["x"].as_str().unwrap())
                        .unwrap(),
                ),
            ),
        ),
        (
            "RS384, not an accepted algorithm",
            sign(Algorithm::RS384, Some("rsa-1"), &valid, &RSA.encoding),
        ),
        ("an EdDSA header on an RSA signature", {
            let rs = sign(Algorithm::RS256, Some("rsa-1"), &valid, &RSA.encoding);
            let signature = rs.rsplit('.').next().unwrap();
            raw_token(
                &json!({ "alg": "EdDSA", "kid": "rsa-1" }),
                &valid,
                signature,
            )
        }),
    ];
    for (why, token) in cases {
        let response = app.file_request(&token, &json!({ "type": "access" })).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{why}");
        assert_problem(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
    }
    // Nothing was filed.
    let all: Vec<Value> = app
        .list_requests(&app.admin_token)
        .await
        .json()
        .await
        .unwrap();
    assert!(all.is_empty(), "{all:?}");
    // Within the leeway (60 s), a just-expired token still passes.
    let late = ed_token(&ed1, &with(json!({ "exp": now() - 10 })));
    assert_eq!(me(&app, &late).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_subject_claim_other_than_sub_can_name_the_subject() {
    let ed = ed_key("k");
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, json!({ "keys": [ed.jwk] }).to_string()).unwrap();
    let mut entry = issuer(APP);
    entry.jwks_file = Some(jwks);
    entry.subject_claim = "user_id".into();
    let app = spawn_app_with(Spawn {
        subjects: 2,
        days: 1,
        trusted_issuers: vec![entry],
        ..Spawn::default()
    })
    .await;
    let sub = app.summary.subjects[1].user_id.clone();
    let mut c = claims(APP, "auth0|5f7c8ec7c33c6c004bbafe82");
    c["user_id"] = json!(sub);
    let body: Value = me(&app, &ed_token(&ed, &c)).await.json().await.unwrap();
    assert_eq!(body["subject_id"], json!(sub));
    let without = claims(APP, &sub);
    assert_problem(
        me(&app, &ed_token(&ed, &without)).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
}

/// A JWK Set server on a local port, counting its fetches.
struct JwksServer {
    url: String,
    keys: Arc<Mutex<Value>>,
    fetches: Arc<AtomicUsize>,
}

async fn serve_jwks(keys: Value) -> JwksServer {
    use actix_web::{App, HttpResponse, HttpServer, web};
    let keys = Arc::new(Mutex::new(keys));
    let fetches = Arc::new(AtomicUsize::new(0));
    let (served, counted) = (keys.clone(), fetches.clone());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = HttpServer::new(move || {
        let (served, counted) = (served.clone(), counted.clone());
        App::new().route(
            "/.well-known/jwks.json",
            web::get().to(move || {
                let (served, counted) = (served.clone(), counted.clone());
                async move {
                    counted.fetch_add(1, Ordering::SeqCst);
                    let body = served.lock().unwrap().to_string();
                    HttpResponse::Ok()
                        .content_type("application/jwk-set+json")
                        .body(body)
                }
            }),
        )
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    JwksServer {
        url: format!("http://127.0.0.1:{port}/.well-known/jwks.json"),
        keys,
        fetches,
    }
}

#[tokio::test]
async fn a_jwks_url_is_cached_and_refetched_when_a_token_names_an_unknown_kid() {
    let (old, new) = (ed_key("2025-01"), ed_key("2025-02"));
    let server = serve_jwks(json!({ "keys": [old.jwk] })).await;
    let mut entry = issuer(REMOTE);
    entry.jwks_url = Some(server.url.clone());
    let app = spawn_app_with(Spawn {
        subjects: 2,
        days: 1,
        trusted_issuers: vec![entry],
        ..Spawn::default()
    })
    .await;
    let sub = app.summary.subjects[0].user_id.clone();
    let c = claims(REMOTE, &sub);

    // Fetched once (at start or on the first token), then served from the cache.
    for _ in 0..3 {
        assert_eq!(me(&app, &ed_token(&old, &c)).await.status(), StatusCode::OK);
    }
    assert_eq!(server.fetches.load(Ordering::SeqCst), 1);

    // The issuer rotates its key: a token naming the new kid makes Lethe refetch once.
    *server.keys.lock().unwrap() = json!({ "keys": [old.jwk, new.jwk] });
    let response = app
        .file_request(&ed_token(&new, &c), &json!({ "type": "access" }))
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let filed: Value = response.json().await.unwrap();
    assert_eq!(filed["verification_note"], json!(format!("jwt:{REMOTE}")));
    assert_eq!(server.fetches.load(Ordering::SeqCst), 2);

    // Unknown kids right after do not make Lethe fetch again (at most once per 30 s).
    for kid in ["made-up-1", "made-up-2"] {
        let forged = sign(Algorithm::EdDSA, Some(kid), &c, &ed_key(kid).encoding);
        assert_problem(
            me(&app, &forged).await,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        )
        .await;
    }
    assert_eq!(server.fetches.load(Ordering::SeqCst), 2);
    assert_eq!(me(&app, &ed_token(&new, &c)).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_service_does_not_start_with_an_unreadable_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = lethe_core::config::Settings::embedded(dir.path());
    let mut entry = issuer(APP);
    entry.jwks_file = Some(dir.path().join("missing.json"));
    settings.auth.trusted_issuers = vec![entry];
    settings.server.port = 0;
    let error = match lethe_service::startup::Application::build(settings).await {
        Err(e) => format!("{e:#}"),
        Ok(_) => panic!("the service started with a missing key file"),
    };
    assert!(error.contains("auth.trusted_issuers[0]"), "{error}");
    assert!(error.contains("missing.json"), "{error}");
}
