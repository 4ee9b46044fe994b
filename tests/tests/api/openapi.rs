//! The committed OpenAPI document must match the code, and the docs UI must be served.

use reqwest::StatusCode;

use crate::helpers::spawn_app;

#[test]
fn the_committed_openapi_document_is_fresh() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../openapi/openapi.json");
    let generated = lethe_service::openapi::openapi_json();
    if std::env::var_os("LETHE_UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, format!("{generated}\n")).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed.trim_end() == generated.trim_end(),
        "openapi/openapi.json is stale: run `LETHE_UPDATE_OPENAPI=1 cargo test -p lethe-tests --test api openapi` and commit it"
    );
}

#[test]
fn every_operation_has_a_unique_id() {
    let doc: serde_json::Value =
        serde_json::from_str(&lethe_service::openapi::openapi_json()).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path} has no id"));
            assert!(
                seen.insert(id.to_string()),
                "operationId {id} is used twice"
            );
        }
    }
    assert!(seen.contains("get_v1_datasets_id"), "{seen:?}");
}

#[tokio::test]
async fn the_document_and_the_offline_docs_ui_are_served() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let doc: serde_json::Value = response.json().await.unwrap();
    for path in [
        "/v1/auth/login",
        "/v1/requests",
        "/v1/requests/{id}/approve",
        "/v1/audit/export",
        "/v1/datasets",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} documented");
    }
    let response = app.client.get(app.url("/docs/")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.text().await.unwrap().contains("swagger"));
    let response = app
        .client
        .get(app.url("/docs/swagger-ui-bundle.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "assets are vendored, not fetched"
    );
}

#[tokio::test]
async fn probes_answer() {
    let app = spawn_app().await;
    assert_eq!(
        app.client
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        app.client
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let response = app
        .client
        .get(app.url("/v1/nothing-here"))
        .send()
        .await
        .unwrap();
    crate::helpers::assert_problem(response, StatusCode::NOT_FOUND, "not_found").await;
}
