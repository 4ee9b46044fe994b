//! Domain types: validated newtypes at the edge and the privacy-request model.
//!
//! Values are parsed once where they enter the system (HTTP body, CLI argument, database row)
//! and carry their proof afterwards.

mod api_token;
mod dataset_format;
mod deadline;
mod ids;
mod rectification;
mod request;
mod residency;
mod schema;
mod time;

pub use api_token::{API_TOKEN_PREFIX, ApiTokenSecret};
pub use dataset_format::DatasetFormat;
pub use deadline::{
    ExtensionMonths, ExtensionReason, ExtensionRefusal, check_extension, extended_due_date,
};
pub use ids::{DatasetName, ERASED_SUBJECT_PREFIX, Email, ParseError, Role, SubjectId};
pub use rectification::{MAX_CHANGED_COLUMNS, Rectification, RectificationError, typed_value};
pub use request::{RequestStatus, RequestType};
pub use residency::{Jurisdiction, Region};
pub use schema::{
    ColumnSpec, ColumnType, DEFAULT_ROW_GROUP_ROWS, DEFAULT_TARGET_FILE_BYTES, DatasetSchema,
    ErasureStrategy, Layout, PartitionSpec, PartitionTransform, PiiHandling, SchemaError,
};
pub use time::{Timestamp, due_date, from_db, to_db};
