//! Datasets: the data map of where subjects' rows live.

use actix_web::{HttpResponse, get, post, web};
use lethe_core::audit::NewAuditEntry;
use lethe_core::domain::{DatasetName, DatasetSchema, Role};
use lethe_core::lake::LakeRoot;
use lethe_core::store::{Dataset, NewDataset};
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::startup::AppState;

/// A dataset to register: a lake written by others (by its root and subject column), or a
/// Lethe-managed dataset (with a `schema`) that pipelines fill through ingest.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "running_events", "root_url": "file:///srv/lake/running_events", "subject_column": "user_id"}))]
pub struct CreateDataset {
    /// Unique name: `[a-z][a-z0-9_-]{0,63}`.
    pub name: String,
    /// Root of the Hive-partitioned Parquet lake: `s3://bucket/prefix`, `file:///…` or a local
    /// path. With a schema, a local root that does not exist yet is created.
    pub root_url: String,
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
#[schema(example = json!({"id": "5f0c…", "name": "running_events", "root_url": "file:///srv/lake/running_events", "subject_column": "user_id", "partition_columns": ["date", "region"], "created_by": "user:1b2c…", "created_at": "2025-01-07T10:00:00Z", "schema": null, "managed": false}))]
pub struct DatasetView {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Root URL.
    pub root_url: String,
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
            root_url: d.root_url,
            subject_column: d.subject_column,
            partition_columns: d.partition_columns,
            created_by: d.created_by,
            created_at: d.created_at,
        }
    }
}

/// Registers a dataset (admin). The root must not be a Delta Lake or Iceberg table (those
/// must never be rewritten file by file).
///
/// Without a schema the root must exist; its partition keys are discovered from its folders
/// unless given. With a schema (a Lethe-managed dataset) the schema is validated, a missing
/// local root is created, and the root must hold no data file yet: Lethe writes every file of
/// it, through ingest.
#[utoipa::path(post, path = "/v1/datasets", tag = "datasets", security(("bearer" = [])),
    request_body(content = CreateDataset, examples(
        ("lake" = (summary = "A lake written by others", value = json!({"name": "running_events", "root_url": "file:///srv/lake/running_events", "subject_column": "user_id"}))),
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
        (status = 400, description = "`validation`: invalid name or schema, missing root, a table format root, a non-empty root for a schema. `root_unreachable`: the root could not be listed within 10 s (wrong bucket, no credentials, unreachable store). `root_not_allowed`: the root (or a region root) is not under `storage.allowed_roots`, or overlaps Lethe's own database, keys, tombstone journal or exports", body = crate::error::Problem, content_type = "application/problem+json"),
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
    let name = DatasetName::parse(body.name)?;
    let (subject_column, declared_partitions) = match &body.schema {
        Some(schema) => columns_of_schema(schema, body.subject_column, body.partition_columns)?,
        None => {
            let column = body.subject_column.ok_or_else(|| {
                ApiError::validation("subject_column is required for a dataset without a schema")
            })?;
            if column.trim().is_empty() {
                return Err(ApiError::validation("subject_column must not be empty"));
            }
            (column, body.partition_columns)
        }
    };
    check_root(&state, &body.root_url)?;
    if let Some(schema) = &body.schema {
        for url in schema.region_roots.values() {
            check_root(&state, url)?;
        }
    }
    if body.schema.is_some() {
        create_local_root(&body.root_url).await?;
    }
    let root = LakeRoot::parse(&body.root_url).map_err(|e| ApiError::validation(e.to_string()))?;
    let files = list_root(&root, &body.root_url).await?;
    if body.schema.is_some() && !files.is_empty() {
        return Err(ApiError::validation(format!(
            "a dataset with a schema starts empty (Lethe writes every file of it), but {} already holds {} files",
            body.root_url,
            files.len()
        )));
    }
    if let Some(schema) = &body.schema {
        prepare_region_roots(&body.root_url, schema).await?;
    }
    check_root_is_free(&state, name.as_str(), &body.root_url, body.schema.as_ref()).await?;
    let partition_columns = match declared_partitions {
        Some(columns) => columns,
        None => files
            .first()
            .map(|f| f.partition.iter().map(|(k, _)| k.clone()).collect())
            .unwrap_or_default(),
    };
    let audit = NewAuditEntry::new(caller.actor(), "dataset.registered").details(json!({
        "name": name.as_str(),
        "root_url": body.root_url,
        "subject_column": subject_column,
        "files": files.len(),
        "managed": body.schema.is_some(),
        "region_roots": body.schema.as_ref().map(|s| &s.region_roots),
    }));
    let dataset = state
        .store
        .create_dataset(
            NewDataset {
                name: name.as_str().to_string(),
                root_url: body.root_url,
                subject_column,
                partition_columns,
                created_by: caller.actor(),
                schema: body.schema,
            },
            audit,
        )
        .await
        .map_err(|e| match e {
            lethe_core::store::StoreError::Conflict(_) => ApiError::Conflict {
                code: "dataset_exists",
                detail: format!("a dataset named {} already exists", name.as_str()),
            },
            other => other.into(),
        })?;
    Ok(HttpResponse::Created().json(DatasetView::from(dataset)))
}

/// The subject column and partition keys of a dataset with `schema`, after validating the
/// schema and checking that the `subject_column` and `partition_columns` given beside it, if
/// any, agree with it.
///
/// # Errors
/// [`ApiError::BadRequest`] (`validation`) naming the problem.
fn columns_of_schema(
    schema: &DatasetSchema,
    subject_column: Option<String>,
    partition_columns: Option<Vec<String>>,
) -> Result<(String, Option<Vec<String>>), ApiError> {
    schema
        .validate()
        .map_err(|e| ApiError::validation(e.to_string()))?;
    let primary = schema.primary_subject();
    if let Some(given) = subject_column.filter(|given| given != primary) {
        return Err(ApiError::validation(format!(
            "subject_column {given} differs from the schema's first subject column {primary}; omit it"
        )));
    }
    let keys: Vec<String> = schema.partition_by.iter().map(|p| p.name.clone()).collect();
    if let Some(given) = partition_columns.filter(|given| *given != keys) {
        return Err(ApiError::validation(format!(
            "partition_columns {given:?} differ from the schema's partition_by {keys:?}; omit them"
        )));
    }
    Ok((primary.to_string(), Some(keys)))
}

/// Prepares the per-region roots of a managed dataset (data residency): each differs from
/// `root_url`, a missing local one is created, and each must be usable (not a table format)
/// and hold no data file yet, like the dataset's root.
///
/// # Errors
/// [`ApiError::BadRequest`] (`validation`) naming the region and the problem.
async fn prepare_region_roots(root_url: &str, schema: &DatasetSchema) -> Result<(), ApiError> {
    for (region, url) in &schema.region_roots {
        if url.trim_end_matches('/') == root_url.trim_end_matches('/') {
            return Err(ApiError::validation(format!(
                "region_roots: the root of {region} is the dataset's root_url; omit it (rows of regions without a root of their own go to root_url)"
            )));
        }
        create_local_root(url).await?;
        let root = LakeRoot::parse(url)
            .map_err(|e| ApiError::validation(format!("region_roots: {region}: {e}")))?;
        let files = list_root(&root, url).await.map_err(|e| match e {
            ApiError::BadRequest { code, detail } => ApiError::BadRequest {
                code,
                detail: format!("region_roots: {region}: {detail}"),
            },
            other => other,
        })?;
        if !files.is_empty() {
            return Err(ApiError::validation(format!(
                "region_roots: a dataset with a schema starts empty, but the root of {region} ({url}) already holds {} files",
                files.len()
            )));
        }
    }
    Ok(())
}

/// Refuses a root outside `storage.allowed_roots`, or over Lethe's own folders, before
/// anything touches it (not even a listing).
///
/// # Errors
/// [`ApiError::BadRequest`] with code `root_not_allowed`.
fn check_root(state: &AppState, url: &str) -> Result<(), ApiError> {
    state
        .settings
        .check_dataset_root(url)
        .map_err(|detail| ApiError::BadRequest {
            code: "root_not_allowed",
            detail,
        })
}

/// Refuses a root (or region root) that is, contains or lies in a root of another dataset:
/// two datasets over the same files would rewrite each other's files and count each row
/// twice. (A dataset of the same name is left to the store's own 409 `dataset_exists`.)
///
/// # Errors
/// [`ApiError::Conflict`] with code `root_taken`; store errors.
async fn check_root_is_free(
    state: &AppState,
    name: &str,
    root_url: &str,
    schema: Option<&DatasetSchema>,
) -> Result<(), ApiError> {
    let mut new_roots = vec![root_url.to_string()];
    if let Some(schema) = schema {
        new_roots.extend(schema.region_roots.values().cloned());
    }
    for existing in state.store.list_datasets().await? {
        if existing.name == name {
            continue;
        }
        let mut taken = vec![existing.root_url.clone()];
        if let Some(schema) = &existing.schema {
            taken.extend(schema.region_roots.values().cloned());
        }
        for new in &new_roots {
            if taken
                .iter()
                .any(|old| lethe_core::config::roots_overlap(new, old))
            {
                return Err(ApiError::Conflict {
                    code: "root_taken",
                    detail: format!(
                        "{new} overlaps the root of dataset {}; a root belongs to one dataset only",
                        existing.name
                    ),
                });
            }
        }
    }
    Ok(())
}

/// The data files of a dataset's root, listed within [`lethe_core::datasets::ROOT_LIST_TIMEOUT`].
///
/// # Errors
/// 400 `validation` for a table format's root or an invalid root; 400 `root_unreachable` when
/// it cannot be listed in time.
pub(crate) async fn list_root(
    root: &LakeRoot,
    url: &str,
) -> Result<Vec<lethe_core::lake::DataFile>, ApiError> {
    Ok(lethe_core::datasets::list_root(root, url).await?)
}

/// Creates the folder of a local root (`file:///…` or a path) when it is missing. Object store
/// roots need nothing, and a `file://` URL that is not a plain absolute path (a host, percent
/// escapes) is left for [`LakeRoot::parse`] to judge.
///
/// # Errors
/// [`ApiError::BadRequest`] (`validation`) when the folder cannot be created.
async fn create_local_root(root_url: &str) -> Result<(), ApiError> {
    let path = match root_url.strip_prefix("file://") {
        Some(rest) if rest.starts_with('/') && !rest.contains('%') => rest,
        Some(_) => return Ok(()),
        None if root_url.contains("://") => return Ok(()),
        None => root_url,
    };
    tokio::fs::create_dir_all(path)
        .await
        .map_err(|e| ApiError::validation(format!("cannot create the root folder {path}: {e}")))
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
