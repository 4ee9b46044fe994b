//! Datasets: the data map of where subjects' rows live.

use actix_web::{HttpResponse, get, post, web};
use lethe_core::audit::NewAuditEntry;
use lethe_core::domain::{DatasetName, Role};
use lethe_core::lake::{LakeError, LakeRoot};
use lethe_core::store::{Dataset, NewDataset};
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::startup::AppState;

/// A dataset to register.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"name": "running_events", "root_url": "file:///srv/lake/running_events", "subject_column": "user_id"}))]
pub struct CreateDataset {
    /// Unique name: `[a-z][a-z0-9_-]{0,63}`.
    pub name: String,
    /// Root of the Hive-partitioned Parquet lake: `file:///…` or a local path.
    pub root_url: String,
    /// Column holding the subject id.
    pub subject_column: String,
    /// Partition keys in path order; discovered from `key=value` folders when omitted.
    pub partition_columns: Option<Vec<String>>,
}

/// A registered dataset.
#[derive(Debug, serde::Serialize, ToSchema)]
#[schema(example = json!({"id": "5f0c…", "name": "running_events", "root_url": "file:///srv/lake/running_events", "subject_column": "user_id", "partition_columns": ["date", "region"], "created_by": "user:1b2c…", "created_at": "2025-01-07T10:00:00Z"}))]
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
}

impl From<Dataset> for DatasetView {
    fn from(d: Dataset) -> Self {
        Self {
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

/// Registers a dataset (admin). The root must exist and must not be a Delta Lake or Iceberg
/// table (those must never be rewritten file by file).
#[utoipa::path(post, path = "/v1/datasets", tag = "datasets", security(("bearer" = [])),
    request_body = CreateDataset,
    responses((status = 201, body = DatasetView),
        (status = 400, description = "Invalid name, missing root or a table format root", body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 403, body = crate::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Name taken", body = crate::error::Problem, content_type = "application/problem+json")))]
#[post("/datasets")]
pub async fn create(
    state: web::Data<AppState>,
    caller: Caller,
    body: web::Json<CreateDataset>,
) -> Result<HttpResponse, ApiError> {
    caller.require(&[Role::Admin])?;
    let body = body.into_inner();
    let name = DatasetName::parse(body.name)?;
    if body.subject_column.trim().is_empty() {
        return Err(ApiError::validation("subject_column must not be empty"));
    }
    let root = LakeRoot::parse(&body.root_url).map_err(|e| ApiError::validation(e.to_string()))?;
    let files = root.list_files().await.map_err(|e| match e {
        LakeError::TableFormat { .. } | LakeError::InvalidRoot { .. } => {
            ApiError::validation(e.to_string())
        }
        other => ApiError::Internal(other.into()),
    })?;
    let partition_columns = match body.partition_columns {
        Some(columns) => columns,
        None => files
            .first()
            .map(|f| f.partition.iter().map(|(k, _)| k.clone()).collect())
            .unwrap_or_default(),
    };
    let audit = NewAuditEntry::new(caller.actor(), "dataset.registered").details(json!({
        "name": name.as_str(),
        "root_url": body.root_url,
        "subject_column": body.subject_column,
        "files": files.len(),
    }));
    let dataset = state
        .store
        .create_dataset(
            NewDataset {
                name: name.as_str().to_string(),
                root_url: body.root_url,
                subject_column: body.subject_column,
                partition_columns,
                created_by: caller.actor(),
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
