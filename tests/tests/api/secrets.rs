//! What stops the start. No known secrets: the service refuses placeholder, short or
//! predictable secrets, compose requires every secret, and `lethe-service secrets generate`
//! writes fresh ones. No JWK Set on a private address unless the operator allows it.

use lethe_core::config::Settings;
use lethe_service::startup::Application;
use secrecy::SecretString;

/// A change to the settings before the service starts.
type Configure = fn(&mut Settings);

fn settings(dir: &std::path::Path) -> Settings {
    let mut settings = Settings::embedded(dir);
    settings.server.port = 0;
    settings.worker.in_process = false;
    settings
}

async fn refused(settings: Settings) -> String {
    match Application::build(settings).await {
        Ok(_) => panic!("the service should refuse to start"),
        Err(e) => format!("{e:#}"),
    }
}

#[tokio::test]
async fn the_service_refuses_to_start_with_the_secrets_compose_used_to_ship() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(Configure, &str); 4] = [
        (
            |s| {
                s.auth.jwt_secret = Some(SecretString::from(
                    "change-me-change-me-change-me-change-me",
                ))
            },
            "auth.jwt_secret",
        ),
        (
            |s| {
                s.auth.pseudonym_key =
                    Some(SecretString::from("change-me-too-change-me-too-change-me"))
            },
            "auth.pseudonym_key",
        ),
        (
            |s| {
                s.crypto.kek = Some(SecretString::from(
                    "Y2hhbmdlLW1lLWNoYW5nZS1tZS1jaGFuZ2UtbWUtMzI=",
                ))
            },
            "crypto.kek",
        ),
        (
            |s| {
                s.crypto.subject_key = Some(SecretString::from(
                    "change-me-three-change-me-three-change-me",
                ))
            },
            "crypto.subject_key",
        ),
    ];
    for (configure, name) in cases {
        let mut s = settings(dir.path());
        configure(&mut s);
        let error = refused(s).await;
        assert!(error.contains(name), "{error}");
        assert!(error.contains("placeholder"), "{error}");
        assert!(
            !error.contains("change-me-"),
            "the secret is not repeated: {error}"
        );
    }
}

#[tokio::test]
async fn short_and_predictable_secrets_are_refused_too() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path());
    s.auth.jwt_secret = Some(SecretString::from("a-short-but-random-7f3a"));
    assert!(refused(s).await.contains("at least 32"));
    let mut s = settings(dir.path());
    s.auth.jwt_secret = Some(SecretString::from("0123456789abcdef".repeat(3)));
    assert!(refused(s).await.contains("repeated"));
    let mut s = settings(dir.path());
    s.auth.jwt_secret = Some(SecretString::from(format!("{}b", "a".repeat(40))));
    assert!(refused(s).await.contains("predictable"));
    // A key file edited by hand is checked like a configured value.
    std::fs::write(dir.path().join("jwt.key"), "secret").unwrap();
    let error = refused(settings(dir.path())).await;
    assert!(error.contains("jwt.key"), "{error}");
}

#[tokio::test]
async fn the_embedded_default_generates_random_private_key_files() {
    let dir = tempfile::tempdir().unwrap();
    let app = Application::build(settings(dir.path())).await.unwrap();
    drop(app);
    for name in ["jwt.key", "pseudonym.key", "subject-ref.key"] {
        let path = dir.path().join(name);
        let text = std::fs::read_to_string(&path).unwrap();
        lethe_core::config::check_text_secret(&text).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
    }
    // A second start reads them back.
    Application::build(settings(dir.path())).await.unwrap();
}

#[tokio::test]
async fn secrets_generate_writes_a_private_env_file_the_service_starts_with() {
    let dir = tempfile::tempdir().unwrap();
    let env = dir.path().join(".env");
    lethe_service::secrets::generate(&env).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&env).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let text = std::fs::read_to_string(&env).unwrap();
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} missing from {text}"))
            .to_string()
    };
    for name in [
        "POSTGRES_PASSWORD",
        "MINIO_ROOT_USER",
        "MINIO_ROOT_PASSWORD",
        "LETHE_JWT_SECRET",
        "LETHE_PSEUDONYM_KEY",
        "LETHE_KEK",
        "LETHE_SUBJECT_KEY",
    ] {
        assert!(!value(name).is_empty());
    }
    let data = dir.path().join("data");
    let mut s = settings(&data);
    s.auth.jwt_secret = Some(SecretString::from(value("LETHE_JWT_SECRET")));
    s.auth.pseudonym_key = Some(SecretString::from(value("LETHE_PSEUDONYM_KEY")));
    s.crypto.kek = Some(SecretString::from(value("LETHE_KEK")));
    s.crypto.subject_key = Some(SecretString::from(value("LETHE_SUBJECT_KEY")));
    Application::build(s).await.unwrap();

    // Never overwritten: the keys may already protect data.
    let error = lethe_service::secrets::generate(&env)
        .unwrap_err()
        .to_string();
    assert!(error.contains("already exists"), "{error}");
    assert_eq!(std::fs::read_to_string(&env).unwrap(), text);
}

#[test]
fn compose_requires_every_secret_and_ships_none() {
    let compose = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docker-compose.yml"),
    )
    .unwrap();
    for name in [
        "POSTGRES_PASSWORD",
        "MINIO_ROOT_USER",
        "MINIO_ROOT_PASSWORD",
        "LETHE_JWT_SECRET",
        "LETHE_PSEUDONYM_KEY",
        "LETHE_KEK",
        "LETHE_SUBJECT_KEY",
    ] {
        assert!(
            compose.contains(&format!("${{{name}:?")),
            "{name} must be required"
        );
        assert!(
            !compose.contains(&format!("${{{name}:-")),
            "{name} must have no fallback value"
        );
    }
    assert!(!compose.to_lowercase().contains("change-me"));
}

#[tokio::test]
async fn a_jwks_url_on_a_private_or_metadata_address_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    for url in [
        "https://169.254.169.254/jwks.json",
        "https://10.0.0.8/.well-known/jwks.json",
        "https://[fd00::8]/jwks.json",
    ] {
        let mut s = settings(dir.path());
        s.auth.trusted_issuers = vec![lethe_core::config::TrustedIssuerSettings {
            issuer: "https://login.example.com/".into(),
            audience: "lethe".into(),
            jwks_file: None,
            jwks_url: Some(url.into()),
            public_key_pem: None,
            algorithm: None,
            leeway_s: 60,
            subject_claim: "sub".into(),
        }];
        let error = refused(s.clone()).await;
        assert!(error.contains("allow_private_networks"), "{error}");
        // An operator whose identity provider runs on the private network says so.
        s.webhooks.allow_private_networks = true;
        Application::build(s).await.unwrap();
    }
}
