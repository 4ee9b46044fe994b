//! The Iceberg REST catalog (Iceberg REST Catalog API, `open-api/rest-catalog-open-api.yaml`
//! of apache/iceberg): the endpoints Lethe uses.
//!
//! - `GET  {uri}/v1/config?warehouse={name}`: the `prefix` override, if any;
//! - `GET  {uri}/v1/{prefix}/namespaces/{ns}/tables/{table}`: `metadata-location` and
//!   `metadata` (LoadTableResult);
//! - `POST {uri}/v1/{prefix}/namespaces/{ns}/tables/{table}`: a commit (CommitTableRequest):
//!   `requirements` (`assert-table-uuid`, `assert-ref-snapshot-id` of `main`) and `updates`
//!   (`add-snapshot` + `set-snapshot-ref`, or `remove-snapshots` + `remove-snapshot-ref`).
//!   The catalog writes the metadata file. 200: committed; 409: a requirement failed (another
//!   writer committed first); 500, 502, 503, 504: the commit's state is unknown.
//!
//! Namespace levels are joined by the unit separator (`%1F`). A bearer token is read from
//! the environment variable `LETHE_ICEBERG_REST_TOKEN`, never from the dataset or the URI.

use serde_json::{Value, json};

use super::metadata::LoadedTable;
use crate::lake::error::LakeError;

/// What a commit changes, as REST catalog updates (spec: `TableUpdate`).
#[derive(Debug, Clone)]
pub enum Change {
    /// A new snapshot, made current on `main`.
    AddSnapshot(Value),
    /// Snapshots expired, and the refs that pointed at them.
    Expire {
        /// Snapshot ids.
        ids: Vec<i64>,
        /// Ref names removed.
        refs: Vec<String>,
    },
}

/// A REST catalog: its base URI and path prefix.
#[derive(Clone)]
pub struct RestCatalog {
    base: String,
    prefix: Option<String>,
    client: reqwest::Client,
    token: Option<String>,
}

impl std::fmt::Debug for RestCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestCatalog")
            .field("base", &self.base)
            .field("prefix", &self.prefix)
            .finish()
    }
}

fn error(root: &str, reason: String) -> LakeError {
    LakeError::Table {
        root: root.to_string(),
        reason,
    }
}

impl RestCatalog {
    /// Connects to the REST catalog at `uri` (`https://…`, `http://…`) for warehouse
    /// `name`: reads its configuration (the path prefix).
    ///
    /// # Errors
    /// [`LakeError::Table`] when the catalog cannot be reached or answers an error.
    pub async fn connect(uri: &str, name: &str) -> Result<Self, LakeError> {
        Self::connect_with(uri, name, std::env::var("LETHE_ICEBERG_REST_TOKEN").ok()).await
    }

    /// [`RestCatalog::connect`] with the bearer `token` given (from Lethe's configuration)
    /// instead of read from the environment.
    ///
    /// # Errors
    /// As [`RestCatalog::connect`].
    pub async fn connect_with(
        uri: &str,
        name: &str,
        token: Option<String>,
    ) -> Result<Self, LakeError> {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| error(uri, format!("HTTP client: {e}")))?;
        let mut me = Self {
            base: uri.trim_end_matches('/').to_string(),
            prefix: None,
            client,
            token,
        };
        let config = me
            .send(
                reqwest::Method::GET,
                &format!("/v1/config?warehouse={name}"),
                None,
            )
            .await?;
        match config {
            (200, body) => {
                me.prefix = body
                    .pointer("/overrides/prefix")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                Ok(me)
            }
            (status, body) => Err(error(
                uri,
                format!("GET /v1/config answered {status}: {body}"),
            )),
        }
    }

    fn table_path(&self, namespace: &str, table: &str) -> String {
        let ns = namespace.split('.').collect::<Vec<_>>().join("%1F");
        match &self.prefix {
            Some(p) => format!("/v1/{p}/namespaces/{ns}/tables/{table}"),
            None => format!("/v1/namespaces/{ns}/tables/{table}"),
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), LakeError> {
        let url = format!("{}{path}", self.base);
        let mut request = self.client.request(method, &url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        let response = request
            .send()
            .await
            .map_err(|e| error(&url, format!("REST catalog unreachable: {e}")))?;
        let status = response.status().as_u16();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| error(&url, format!("REST catalog answer unreadable: {e}")))?;
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok((status, value))
    }

    /// The current `metadata-location` of `namespace`.`table`.
    ///
    /// # Errors
    /// [`LakeError::Table`] when the catalog answers an error (404: no such table).
    pub async fn metadata_location(
        &self,
        namespace: &str,
        table: &str,
    ) -> Result<String, LakeError> {
        let path = self.table_path(namespace, table);
        match self.send(reqwest::Method::GET, &path, None).await? {
            (200, body) => body
                .get("metadata-location")
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| error(&path, "no metadata-location in the answer".into())),
            (status, body) => Err(error(
                &format!("{namespace}.{table}"),
                format!("the REST catalog answered {status}: {body}"),
            )),
        }
    }

    /// Commits `change` on top of `base`. Returns the new metadata location, or `None` when a
    /// requirement failed (409: another writer committed first).
    ///
    /// # Errors
    /// [`LakeError::Table`] for any other answer (the commit's state is then unknown).
    pub(crate) async fn commit(
        &self,
        namespace: &str,
        table: &str,
        base: &LoadedTable,
        change: &Change,
    ) -> Result<Option<String>, LakeError> {
        let mut requirements = Vec::new();
        if let Some(uuid) = base.metadata.table_uuid() {
            requirements.push(json!({"type": "assert-table-uuid", "uuid": uuid}));
        }
        requirements.push(json!({
            "type": "assert-ref-snapshot-id",
            "ref": "main",
            "snapshot-id": base.metadata.current_snapshot_id(),
        }));
        let updates = match change {
            Change::AddSnapshot(snapshot) => {
                let id = snapshot.get("snapshot-id").cloned().unwrap_or(Value::Null);
                vec![
                    json!({"action": "add-snapshot", "snapshot": snapshot}),
                    json!({"action": "set-snapshot-ref", "ref-name": "main", "type": "branch", "snapshot-id": id}),
                ]
            }
            Change::Expire { ids, refs } => {
                let mut u: Vec<Value> = refs
                    .iter()
                    .map(|r| json!({"action": "remove-snapshot-ref", "ref-name": r}))
                    .collect();
                u.push(json!({"action": "remove-snapshots", "snapshot-ids": ids}));
                u
            }
        };
        let body = json!({
            "identifier": {"namespace": namespace.split('.').collect::<Vec<_>>(), "name": table},
            "requirements": requirements,
            "updates": updates,
        });
        let path = self.table_path(namespace, table);
        match self.send(reqwest::Method::POST, &path, Some(body)).await? {
            (200, answer) => Ok(answer
                .get("metadata-location")
                .and_then(Value::as_str)
                .map(str::to_string)),
            (409, _) => Ok(None),
            (status, answer) => Err(error(
                &format!("{namespace}.{table}"),
                format!(
                    "the REST catalog answered {status} to the commit (state unknown): {answer}"
                ),
            )),
        }
    }
}
