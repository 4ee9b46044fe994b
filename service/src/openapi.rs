//! The OpenAPI document, generated from the handlers' annotations.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes;

/// The Lethe API.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Lethe",
        description = "GDPR data subject requests (access, portability, rectification, erasure, restriction) over Parquet data lakes, with a hash-chained audit log.\n\nErrors are RFC 7807 `application/problem+json` documents with a stable `code`.",
        license(name = "Apache-2.0")
    ),
    paths(
        routes::health::healthz, routes::health::readyz, crate::metrics::metrics_endpoint,
        routes::auth::register, routes::auth::login, routes::auth::refresh, routes::auth::logout, routes::auth::change_password,
        routes::email::resend, routes::email::verify,
        routes::users::me, routes::users::list, routes::users::link_subject,
        routes::users::disable, routes::users::enable,
        routes::datasets::create, routes::datasets::list, routes::datasets::get, routes::datasets::remove,
        routes::ingest::ingest, routes::ingest::compact,
        routes::tokens::create, routes::tokens::list, routes::tokens::revoke,
        routes::requests::create, routes::requests::list, routes::requests::get,
        routes::requests::approve, routes::requests::reject, routes::requests::export,
        routes::restrictions::list_restricted,
        routes::lifecycle::cancel, routes::lifecycle::create_hold, routes::lifecycle::list_holds,
        routes::lifecycle::release_hold,
        routes::deadlines::extend, routes::register::export,
        routes::audit::list, routes::audit::export, routes::audit::verify,
        routes::audit::checkpoints, routes::audit::public_keys, routes::certificates::certificate,
        routes::jobs::list, routes::jobs::get, routes::jobs::retry, routes::jobs::cancel,
        routes::webhooks::create, routes::webhooks::list, routes::webhooks::deactivate,
        routes::webhooks::deliveries, routes::webhooks::retry,
        routes::residency::set_jurisdiction, routes::residency::get_jurisdiction,
        routes::residency::set_policy, routes::residency::delete_policy, routes::residency::list_policies,
        routes::residency::scan, routes::residency::remediate, routes::residency::violations,
    ),
    components(schemas(
        crate::error::Problem, crate::error::RowProblem,
        lethe_core::domain::DatasetSchema, lethe_core::domain::DatasetFormat, lethe_core::domain::ColumnSpec, lethe_core::domain::ColumnType,
        lethe_core::domain::PiiHandling, lethe_core::domain::PartitionSpec, lethe_core::domain::PartitionTransform,
        lethe_core::domain::ErasureStrategy, lethe_core::domain::Layout,
        lethe_core::ingest::IngestReport, lethe_core::store::LegalHold, lethe_core::store::TokenScope,
        crate::routes::lifecycle::CreateHold, crate::routes::lifecycle::CancelRequest,
        lethe_core::domain::Role, lethe_core::domain::RequestType, lethe_core::domain::RequestStatus,
        lethe_core::store::RequestEvent, lethe_core::store::RestrictedSubject, lethe_core::store::RegisterEntry, lethe_core::store::Job, lethe_core::store::JobKind, lethe_core::store::JobStatus,
        lethe_core::audit::AuditEntry, lethe_core::audit::VerifyReport, lethe_core::audit::ChainProblem, lethe_core::audit::ProblemKind,
        lethe_core::audit::Checkpoint, lethe_core::audit::PublicKeyInfo, crate::routes::audit::PublicKeyList,
        lethe_core::webhooks::WebhookDelivery, lethe_core::webhooks::DeliveryStatus,
        lethe_core::webhooks::WebhookEvent, lethe_core::webhooks::RequestEventData, lethe_core::webhooks::EventExtension,
        lethe_core::store::ResidencyPolicy, lethe_core::store::ResidencyScan, lethe_core::store::ResidencyViolation, lethe_core::store::ScanStatus,
        crate::routes::residency::SetJurisdiction, crate::routes::residency::JurisdictionView, crate::routes::residency::SetPolicy,
        crate::routes::residency::ResidencyJobRequest, crate::routes::residency::ViolationsView,
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Sign up and sign in"),
        (name = "accounts", description = "Accounts and their link to a data subject"),
        (name = "legal holds", description = "Legal holds (GDPR Art. 17(3)): data an erasure must keep"),
        (name = "datasets", description = "The data map: registered Parquet lakes, and Lethe-managed datasets with a declared schema"),
        (name = "ingest", description = "Rows into Lethe-managed datasets: validated, PII encrypted per subject, Hive-partitioned"),
        (name = "tokens", description = "API tokens for pipelines (the producer role)"),
        (name = "requests", description = "Privacy requests (GDPR Art. 12, 15–18, 20): filing, decisions, deadlines and their extension (Art. 12(3)), and the list of restricted subjects pipelines honour (Art. 18)"),
        (name = "audit", description = "The hash-chained audit log, its signed checkpoints kept outside the database, and the public keys that verify them offline (docs/audit.md)"),
        (name = "register", description = "The register of requests for auditors (GDPR Art. 5(2) accountability): CSV or JSON Lines, without subject ids"),
        (name = "jobs", description = "The work queue: plans, per-file tasks, dead letters"),
        (name = "webhooks", description = "Signed notifications of request status changes to the company's app (`WebhookEvent` bodies, `Lethe-Signature: t=…,v1=…` HMAC-SHA256), with retries and a delivery log"),
        (name = "residency", description = "Data residency (GDPR Chapter V): subjects' jurisdictions, policies of the regions where each jurisdiction's data may be stored, the residency scan and its remediation"),
        (name = "operations", description = "Probes"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "An access token (JWT, HS256) from `POST /v1/auth/login`; a JWT issued by the \
                         company's own app (RS256, ES256 or EdDSA; a trusted issuer configured in \
                         `auth.trusted_issuers`, checked for signature, `exp`, `nbf`, `iss` and \
                         `aud`), whose `sub` claim (or the configured `subject_claim`) is the caller's \
                         subject id (role subject, no Lethe account needed); or a pipeline's API \
                         token (`lethe_pat_…`, role producer) from `POST /v1/tokens`",
                    ))
                    .build(),
            ),
        );
    }
}

/// The OpenAPI document, with an operation id unique across the document for every
/// operation (OpenAPI 3.1 §4.8.10.1): handlers share names across modules (`list`, `get`,
/// `export`), so ids are derived from the method and the path, e.g. `get_v1_datasets_id`.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    for (path, item) in doc.paths.paths.iter_mut() {
        let slug: String = path
            .trim_matches('/')
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect::<String>()
            .split('_')
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join("_");
        let operations = [
            ("get", item.get.as_mut()),
            ("put", item.put.as_mut()),
            ("post", item.post.as_mut()),
            ("delete", item.delete.as_mut()),
            ("patch", item.patch.as_mut()),
        ];
        for (method, operation) in operations {
            if let Some(op) = operation {
                op.operation_id = Some(format!("{method}_{slug}"));
                document_common_problems(op, path.contains('{'));
            }
        }
    }
    doc
}

/// Adds the problems any operation of its kind can answer, where its own annotations do not
/// already say more: 400 (a query, path or body that does not parse), 401 and 403 (a secured
/// operation without a valid token, or called by a role it is not for), 404 (a path naming nothing), 413 and 415 (a body too large or of
/// another media type). Found by the OpenAPI-driven fuzzer (`.ci/fuzz.sh`): every answer the
/// service gives must be in the document.
fn document_common_problems(op: &mut utoipa::openapi::path::Operation, has_path_params: bool) {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let problem = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/problem+json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Problem")))
                    .build(),
            )
            .build()
    };
    let mut common = vec![(
        "400",
        "`malformed_json` or `validation`: the query, path or body does not parse",
    )];
    if op.security.as_ref().is_some_and(|s| !s.is_empty()) {
        common.push(("401", "`unauthorized`: no valid bearer token"));
        common.push(("403", "`forbidden`: the caller's role may not do this"));
    }
    if has_path_params {
        common.push(("404", "`not_found`: nothing has that id"));
    }
    if op.request_body.is_some() {
        common.push(("413", "`payload_too_large`: the body is over the limit"));
        common.push((
            "415",
            "`unsupported_media_type`: the body is not of a type the operation takes",
        ));
    }
    for (status, description) in common {
        op.responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| problem(description).into());
    }
}

/// The document as pretty JSON, as committed in `openapi/openapi.json`.
pub fn openapi_json() -> String {
    document()
        .to_pretty_json()
        .expect("the OpenAPI document serialises")
}
