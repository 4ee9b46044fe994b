use super::*;

#[test]
fn defaults_are_the_embedded_mode() {
    let s = Settings::load_from(None).unwrap();
    assert_eq!(s.server.port, 8080);
    assert!(s.database.url.expose_secret().starts_with("sqlite:"));
    assert!(s.worker.in_process);
    assert_eq!(s.ingest.max_body_bytes, 64 * 1024 * 1024);
    assert_eq!(
        s.storage.exports_dir(),
        PathBuf::from("./lethe-data/exports")
    );
}

#[test]
fn a_file_overrides_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lethe.toml");
    std::fs::write(&file, "[server]\nport = 9999\n[worker]\nlease_s = 5\n").unwrap();
    let s = Settings::load_from(Some(&file)).unwrap();
    assert_eq!(s.server.port, 9999);
    assert_eq!(s.worker.lease_s, 5);
    assert_eq!(
        s.worker.poll_interval_ms, 500,
        "untouched keys keep defaults"
    );
}

#[test]
fn debug_hides_the_database_password() {
    let mut s = Settings::load_from(None).unwrap();
    s.database.url = SecretString::from("postgres://lethe:hunter2@db:5432/lethe".to_string());
    let text = format!("{:?}", s.database);
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains("***"));
}

fn issuer_toml(extra: &str) -> String {
    format!(
        "[[auth.trusted_issuers]]\nissuer = \"https://login.example.com/\"\naudience = \"lethe\"\n{extra}\n"
    )
}

fn load_toml(text: &str) -> Result<Settings, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lethe.toml");
    std::fs::write(&file, text).unwrap();
    Settings::load_with_env(Some(&file), Some(Default::default()))
}

#[test]
fn audit_checkpoints_default_to_the_data_dir_and_read_the_environment() {
    let s = Settings::load_with_env(None, Some(Default::default())).unwrap();
    assert_eq!(s.audit.checkpoint_every_entries, 1000);
    assert_eq!(s.audit.checkpoint_every_s, 60);
    assert!(s.audit.previous_public_keys.is_empty());
    assert_eq!(s.audit.checkpoint_retention_days, None);
    assert!(
        s.audit
            .checkpoint_location(Path::new("/d"))
            .ends_with("/d/audit-checkpoints")
    );
    assert_eq!(
        s.audit.signing_key_path(Path::new("/d")),
        PathBuf::from("/d/audit-signing.key")
    );
    let env = [
        ("LETHE__AUDIT__CHECKPOINT_URL", "s3://bucket/audit"),
        ("LETHE__AUDIT__CHECKPOINT_EVERY_ENTRIES", "50"),
        ("LETHE__AUDIT__CHECKPOINT_RETENTION_DAYS", "3650"),
        ("LETHE__AUDIT__PREVIOUS_PUBLIC_KEYS", "a2V5MQ==, a2V5Mg=="),
    ];
    let env = env
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let s = Settings::load_with_env(None, Some(env)).unwrap();
    assert_eq!(
        s.audit.checkpoint_location(Path::new("/d")),
        "s3://bucket/audit"
    );
    assert_eq!(s.audit.checkpoint_every_entries, 50);
    assert_eq!(s.audit.checkpoint_retention_days, Some(3650));
    assert_eq!(s.audit.previous_public_keys, ["a2V5MQ==", "a2V5Mg=="]);
}

#[test]
fn no_trusted_issuers_by_default() {
    let s = Settings::load_with_env(None, Some(Default::default())).unwrap();
    assert!(s.auth.trusted_issuers.is_empty());
}

#[test]
fn a_trusted_issuer_loads_from_toml_with_defaults() {
    let s = load_toml(&issuer_toml(
        "jwks_url = \"https://login.example.com/jwks.json\"",
    ))
    .unwrap();
    let issuer = &s.auth.trusted_issuers[0];
    assert_eq!(issuer.issuer, "https://login.example.com/");
    assert_eq!(issuer.audience, "lethe");
    assert_eq!(issuer.leeway_s, 60);
    assert_eq!(issuer.subject_claim, "sub");
    assert_eq!(issuer.algorithm, None);
}

#[test]
fn a_public_key_issuer_names_its_algorithm() {
    let s = load_toml(&issuer_toml(
        "public_key_pem = \"\"\"\n-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----\n\"\"\"\nalgorithm = \"EdDSA\"\nleeway_s = 5\nsubject_claim = \"user_id\"",
    ))
    .unwrap();
    let issuer = &s.auth.trusted_issuers[0];
    assert_eq!(issuer.algorithm, Some(JwtAlgorithm::EdDSA));
    assert_eq!(
        (issuer.leeway_s, issuer.subject_claim.as_str()),
        (5, "user_id")
    );
}

#[test]
fn trusted_issuers_load_from_one_environment_variable_of_json() {
    let env = [(
        "LETHE__AUTH__TRUSTED_ISSUERS".to_string(),
        r#"[{"issuer": "https://login.example.com/", "audience": "lethe", "jwks_file": "/etc/lethe/jwks.json", "leeway_s": 30}]"#.to_string(),
    )];
    let s = Settings::load_with_env(None, Some(env.into_iter().collect())).unwrap();
    let issuer = &s.auth.trusted_issuers[0];
    assert_eq!(
        issuer.jwks_file.as_deref(),
        Some(Path::new("/etc/lethe/jwks.json"))
    );
    assert_eq!(issuer.leeway_s, 30);
}

fn invalid(result: Result<Settings, ConfigError>) -> String {
    match result {
        Err(e) => e.to_string(),
        Ok(_) => panic!("the configuration should have been refused"),
    }
}

#[test]
fn an_unknown_algorithm_is_refused() {
    let text = invalid(load_toml(&issuer_toml(
        "public_key_pem = \"-----BEGIN PUBLIC KEY-----\"\nalgorithm = \"HS256\"",
    )));
    assert!(text.contains("unknown variant `HS256`"), "{text}");
    assert!(text.contains("RS256"), "{text}");
}

#[test]
fn two_key_sources_are_refused() {
    let text = invalid(load_toml(&issuer_toml(
        "jwks_file = \"/etc/jwks.json\"\njwks_url = \"https://login.example.com/jwks.json\"",
    )));
    assert!(text.contains("auth.trusted_issuers[0]"), "{text}");
    assert!(
        text.contains("exactly one of jwks_file, jwks_url, public_key_pem (found 2)"),
        "{text}"
    );
}

#[test]
fn no_key_source_is_refused() {
    let text = invalid(load_toml(&issuer_toml("")));
    assert!(text.contains("(found 0)"), "{text}");
}

#[test]
fn a_pem_without_algorithm_and_an_algorithm_without_pem_are_refused() {
    let text = invalid(load_toml(&issuer_toml(
        "public_key_pem = \"-----BEGIN PUBLIC KEY-----\"",
    )));
    assert!(text.contains("public_key_pem needs algorithm"), "{text}");
    let text = invalid(load_toml(&issuer_toml(
        "jwks_file = \"/etc/jwks.json\"\nalgorithm = \"RS256\"",
    )));
    assert!(
        text.contains("algorithm applies to public_key_pem only"),
        "{text}"
    );
}

#[test]
fn plain_http_jwks_urls_are_refused_unless_loopback() {
    let text = invalid(load_toml(&issuer_toml(
        "jwks_url = \"http://login.example.com/jwks.json\"",
    )));
    assert!(text.contains("must use https"), "{text}");
    for ok in [
        "http://127.0.0.1:9000/jwks.json",
        "http://localhost/jwks.json",
        "http://[::1]/jwks",
    ] {
        load_toml(&issuer_toml(&format!("jwks_url = \"{ok}\""))).unwrap();
    }
    let text = invalid(load_toml(&issuer_toml("jwks_url = \"not a url\"")));
    assert!(text.contains("is not a URL"), "{text}");
}

#[test]
fn lethes_own_issuer_duplicates_and_unknown_keys_are_refused() {
    let text = invalid(load_toml(
        "[[auth.trusted_issuers]]\nissuer = \"lethe\"\naudience = \"lethe\"\njwks_file = \"/j\"\n",
    ));
    assert!(text.contains("Lethe's own"), "{text}");
    let twice = format!(
        "{}{}",
        issuer_toml("jwks_file = \"/a\""),
        issuer_toml("jwks_file = \"/b\"")
    );
    let text = invalid(load_toml(&twice));
    assert!(
        text.contains("auth.trusted_issuers[1]") && text.contains("configured twice"),
        "{text}"
    );
    let text = invalid(load_toml(&issuer_toml(
        "jwks_file = \"/a\"\njwks_uri = \"/b\"",
    )));
    assert!(text.contains("unknown field `jwks_uri`"), "{text}");
}

#[test]
fn secrets_are_created_once_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k/jwt.key");
    let a = load_or_create_secret(&path).unwrap();
    let b = load_or_create_secret(&path).unwrap();
    assert_eq!(a.expose_secret(), b.expose_secret());
    assert_eq!(a.expose_secret().len(), 64);
}
