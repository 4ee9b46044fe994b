//! What kind of data a dataset is: Hive-partitioned Parquet folders, a Delta Lake table or an
//! Apache Iceberg table. Folders are rewritten file by file; tables only through their
//! format's own commit (rewriting a table's files behind its log would corrupt it).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The format of a dataset (`POST /v1/datasets` `format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DatasetFormat {
    /// Hive-partitioned Parquet folders under `root_url` (the default).
    #[default]
    Parquet,
    /// A Delta Lake table whose root (holding `_delta_log/`) is `root_url`.
    Delta,
    /// An Apache Iceberg table of a configured catalog (`[iceberg.catalogs.NAME]`).
    Iceberg,
}

impl DatasetFormat {
    /// `parquet`, `delta` or `iceberg` (as stored and served).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Parquet => "parquet",
            Self::Delta => "delta",
            Self::Iceberg => "iceberg",
        }
    }

    /// The format stored as `text`; `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "parquet" => Some(Self::Parquet),
            "delta" => Some(Self::Delta),
            "iceberg" => Some(Self::Iceberg),
            _ => None,
        }
    }

    /// Whether the dataset is a table (Delta or Iceberg): changed only by its format's commits.
    pub fn is_table(self) -> bool {
        self != Self::Parquet
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_round_trip_through_their_names() {
        for f in [
            DatasetFormat::Parquet,
            DatasetFormat::Delta,
            DatasetFormat::Iceberg,
        ] {
            assert_eq!(DatasetFormat::parse(f.as_str()), Some(f));
            assert_eq!(serde_json::to_value(f).unwrap(), f.as_str());
        }
        assert_eq!(DatasetFormat::parse("hudi"), None);
        assert!(!DatasetFormat::Parquet.is_table());
        assert!(DatasetFormat::Iceberg.is_table());
    }
}
