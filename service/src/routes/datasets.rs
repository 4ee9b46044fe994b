//! Datasets: the data map of where subjects' rows live.

use actix_web::{HttpResponse, get, post, web};
use lethe_core::audit::NewAuditEntry;
use lethe_core::datasets::{Register, register};
use lethe_core::domain::{DatasetFormat, DatasetSchema, Role};
use lethe_core::store::Dataset;
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

/// A dataset to register: a lake written by others (by its root and subject column), a
/// Lethe-managed dataset (with a `schema`) that pipelines fill through ingest, or a Delta Lake
/// or Apache Iceberg table (`format`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "running_events", "root_url": "file:///srv/lake/running_events", "subject_column": "user_id"}))]
pub struct CreateDataset {
    /// Unique name: `[a-z][a-z0-9_-]{0,63}`.
    pub name: String,
    /// `parquet` (Hive-partitioned Parquet folders, the default), `delta` (a Delta Lake table:
    /// `root_url` is its root) or `iceberg` (an Apache Iceberg table: `catalog` and `table`).
    #[serde(default)]
    pub format: DatasetFormat,
    /// Root of the Hive-partitioned Parquet lake, or of the Delta table: `s3://bucket/prefix`,
    /// `file:///…` or a local path. With a schema, a local root that does not exist yet is
    /// created. Omitted for an Iceberg table (its root is the table's location).
    pub root_url: Option<String>,
    /// An Iceberg table's catalog: a name configured under `[iceberg.catalogs]` (its URI and
    /// credentials stay in the configuration).
    pub catalog: Option<String>,
    /// An Iceberg table's identifier, `NAMESPACE.TABLE`.
    pub table: Option<String>,
    /// Column holding the subject id. Required without a schema; with one it defaults to the
    /// schema's first subject column (and must equal it when given).
    pub subject_column: Option<String>,
    /// Partition keys in path order. Without a schema, discovered from `key=value` folders
    /// when omitted; with one, the names of `schema.partition_by` (and must equal them when
    /// given).
    pub partition_columns: Option<Vec<String>>,
    /// The declared schema of a Lethe-managed dataset: its rows arrive through
    /// `POST /v1/datasets/{id}/ingest`, with PII encrypted per subject. Such a dataset starts
    /// empty.
    pub schema: Option<DatasetSchema>,
}

/// A registered dataset.
#[derive(Debug, serde::Serialize, ToSchema)]
#[schema(example = json!({"id": "5f0c…", "name": "running_events", "format": "parquet", "root_url": "file:///srv/lake/running_events", "subject_column": "user_id", "partition_columns": ["date", "region"], "created_by": "user:1b2c…", "created_at": "2025-01-07T10:00:00Z", "schema": null, "managed": false}))]
pub struct DatasetView {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// `parquet`, `delta` or `iceberg`.
    pub format: DatasetFormat,
    /// Root URL (a table's root or location).
    pub root_url: String,
    /// An Iceberg table's catalog (its name in the configuration).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub catalog: Option<String>,
    /// An Iceberg table's identifier.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// Subject column.
    pub subject_column: String,
    /// Partition keys.
    pub partition_columns: Vec<String>,
    /// Who registered it.
    pub created_by: String,
    /// When.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// The declared schema, for a Lethe-managed dataset.
    pub schema: Option<DatasetSchema>,
    /// Whether Lethe writes this dataset (it has a schema and accepts ingest).
    pub managed: bool,
}

impl From<Dataset> for DatasetView {
    fn from(d: Dataset) -> Self {
        Self {
            managed: d.schema.is_some(),
            schema: d.schema,
            id: d.id,
            name: d.name,
            format: d.format,
            catalog: d.iceberg.as_ref().map(|t| t.catalog.clone()),
            table: d.iceberg.map(|t| t.table),
            root_url: d.root_url,
            subject_column: d.subject_column,
            partition_columns: d.partition_columns,
            created_by: d.created_by,
            created_at: d.created_at,
        }
    }
}

/// Registers a dataset (admin). A `parquet` root must not be a Delta Lake or Iceberg table
/// (those must never be rewritten file by file): register it with `format` `delta` or
/// `iceberg`, and Lethe changes it only through the format's own commits.
///
/// Without a schema the root must exist; its partition keys are discovered from its folders
/// unless given. With a schema (a Lethe-managed dataset) the schema is validated, a missing
/// local root is created, and the root must hold no data file yet: Lethe writes every file of
/// it, through ingest. A table must load (its log, or its catalog and metadata), use no
/// feature Lethe cannot honour, and have `subject_column` in its current schema; its
/// partition columns are the table's.
#[utoipa::path(post, path = "/v1/datasets", tag = "datasets", security(("bearer" = [])),
    request_body(content = CreateDataset, examples(
        ("lake" = (summary = "A lake written by others", value = json!({"name": "running_events", "root_url": "file:///srv/lake/running_events", "subject_column": "user_id"}))),
        ("delta" = (summary = "A Delta Lake table", value = json!({"name": "orders", "format": "delta", "root_url": "s3://lake/orders", "subject_column": "customer_id"}))),
        ("iceberg" = (summary = "An Iceberg table of a configured catalog", value = json!({"name": "clicks", "format": "iceberg", "catalog": "glue", "table": "web.clicks", "subject_column": "user_id"}))),
        ("managed" = (summary = "A Lethe-managed dataset, filled by ingest", value = json!({
            "name": "running_app",
            "root_url": "s3://lake/running_app",
            "schema": {
                "subject_columns": ["user_id"],
                "columns": [
                    {"name": "event_id", "type": "string"},
                    {"name": "user_id", "type": "string"},
                    {"name": "ts", "type": "timestamp"},
                    {"name": "region", "type": "string"},
                    {"name": "calories", "type": "int32"},
                    {"name": "email", "type": "string", "pii": "encrypt"},
                    {"name": "full_name", "type": "string", "pii": "encrypt"},
                    {"name": "lat", "type": "float64", "pii": "encrypt"},
                    {"name": "lon", "type": "float64", "pii": "encrypt"},
                    {"name": "notes", "type": "string", "nullable": true}
                ],
                "partition_by": [{"name": "date", "source": "ts", "transform": "day"}, {"name": "region", "source": "region"}],
                "region_column": "region",
                "regions": ["EU", "US", "APAC"]
            }
        }))),
    )),
    responses((status = 201, body = DatasetView),
        (status = 400, description = "`validation`: invalid name or schema, missing root, a table format root for `parquet`, a non-empty root for a schema, an unknown catalog, a subject column the table does not have. `root_unreachable`: the root or table could not be read within 10 s (wrong bucket, no credentials, unreachable store). `root_not_allowed`: the root (or a region root, or a table's location) is not under `storage.allowed_roots`, or overlaps Lethe's own database, keys, tombstone journal or exports; or the Iceberg catalog is on a private address without `iceberg.allow_private_networks`. `table_unusable`: the table's log, catalog or metadata cannot be read, or it uses a feature Lethe cannot honour (named)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "`dataset_exists`: name taken. `root_taken`: the root (or a region root) is, contains or lies in another dataset's root", body = crate::error::Problem, content_type = "application/problem+json")))]
#[post("/datasets")]
pub async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<CreateDataset>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Admin])?;
    let body = body.into_inner();
    let command = Register {
        name: body.name,
        format: body.format,
        root_url: body.root_url,
        catalog: body.catalog,
        table: body.table,
        subject_column: body.subject_column,
        partition_columns: body.partition_columns,
        schema: body.schema,
    };
    let dataset = register(&state.store, &state.settings, &caller.actor(), command).await?;
    Ok(HttpResponse::Created().json(DatasetView::from(dataset)))
}

/// Every registered dataset (admin, auditor).
#[utoipa::path(get, path = "/v1/datasets", tag = "datasets", security(("bearer" = [])),
    responses((status = 200, body = [DatasetView]), (status = 403, body = crate::error::Problem, content_type = "application/problem+json")))]
#[get("/datasets")]
pub async fn list(state: web::Data<AppState>, caller: Caller) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Admin, Role::Auditor])?;
    let datasets: Vec<DatasetView> = state
        .store
        .list_datasets()
        .await?
        .into_iter()
        .map(DatasetView::from)
        .collect();
    Ok(HttpResponse::Ok().json(datasets))
}

/// One dataset (admin, auditor).
#[utoipa::path(get, path = "/v1/datasets/{id}", tag = "datasets", security(("bearer" = [])),
    params(("id" = String, Path, description = "Dataset id")),
    responses((status = 200, body = DatasetView), (status = 404, body = crate::error::Problem, content_type = "application/problem+json")))]
#[get("/datasets/{id}")]
pub async fn get(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Admin, Role::Auditor])?;
    Ok(HttpResponse::Ok().json(DatasetView::from(state.store.dataset(&path).await?)))
}

/// Deletes (unregisters) a dataset (admin). Lethe forgets it: it is no longer listed, located,
/// exported, erased or ingested into, its locator index and residency findings are dropped,
/// and its name and root may be registered again. **Its files are not touched**: delete them
/// yourself if they must go. Refused while a legal hold is on the dataset (409
/// `dataset_held`, GDPR Art. 17(3): the held data must stay under Lethe's watch), and while
/// anything may still need it (409 `dataset_in_use`): a lease on its files, any unfinished job,
/// or an open erasure or rectification request, which would otherwise skip the dataset and
/// report done while the subject's rows stay in it. Audited as `dataset.deleted`.
#[utoipa::path(delete, path = "/v1/datasets/{id}", tag = "datasets", security(("bearer" = [])),
    params(("id" = String, Path, description = "Dataset id")),
    responses((status = 204, description = "Deleted (unregistered; the files stay)"),
        (status = 401, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such dataset (or deleted already)", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "`dataset_held`: a legal hold is on it. `dataset_in_use`: a lease on its files, an unfinished job or an open erasure or rectification", body = crate::error::Problem, content_type = "application/problem+json")))]
#[actix_web::delete("/datasets/{id}")]
pub async fn remove(
    state: web::Data<AppState>,
    caller: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Admin])?;
    let audit = NewAuditEntry::new(caller.actor(), "dataset.deleted")
        .details(json!({ "dataset_id": path.as_str() }));
    let dataset = state.store.delete_dataset(&path, audit).await?;
    tracing::info!(dataset = dataset.name, "dataset deleted (unregistered)");
    Ok(HttpResponse::NoContent().finish())
}
