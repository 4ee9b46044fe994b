//! Which Delta table features Lethe can honour when it rewrites files and commits `remove` +
//! `add` actions, and the refusal of the others, before anything is written.
//!
//! Source: Delta protocol, PROTOCOL.md "Table Features" and "Writer Requirements". A writer
//! must support every writer feature of the protocol; Lethe refuses the table with
//! [`LakeError::TableFeature`] naming the first feature it cannot honour, and leaves the table
//! exactly as it was.

use super::snapshot::DeltaSnapshot;
use crate::lake::error::LakeError;

/// Features whose writer requirements a copy-on-write `DELETE` of whole rows meets as it is:
/// rows kept are copied unchanged (invariants, CHECK constraints, generated and identity
/// columns, column defaults hold for them), no schema or metadata change, no checkpoint
/// written (v2 checkpoints, vacuum protocol check), no domain metadata touched.
const HONOURED: &[&str] = &[
    "invariants",
    "checkConstraints",
    "generatedColumns",
    "identityColumns",
    "allowColumnDefaults",
    "timestampNtz",
    "domainMetadata",
    "v2Checkpoint",
    "vacuumProtocolCheck",
];

/// Refuses `snapshot` unless Lethe can honour every feature of its protocol and
/// configuration:
///
/// - `appendOnly` with `delta.appendOnly = true`: the table forbids removing data;
/// - `changeDataFeed` with `delta.enableChangeDataFeed = true`: a `DELETE` must then write
///   change data files (PROTOCOL.md "Change Data Files"), which Lethe does not;
/// - `columnMapping` (or `delta.columnMapping.mode` other than `none`): physical column names
///   differ from the schema's;
/// - `rowTracking` (or `delta.enableRowTracking = true`): rewritten rows must keep their row
///   ids (PROTOCOL.md "Row Tracking");
/// - `inCommitTimestamp` (or `delta.enableInCommitTimestamps = true`): commits need a
///   monotonic `inCommitTimestamp`;
/// - any other feature, known or not, that is not in [`HONOURED`].
///
/// `deletionVectors` is honoured: a rewrite leaves the rows a file's deletion vector deletes
/// out of the new file, and removes the file together with its deletion vector.
///
/// # Errors
/// [`LakeError::TableFeature`] naming the feature.
pub fn check_features(root: &str, snapshot: &DeltaSnapshot) -> Result<(), LakeError> {
    let refuse = |feature: &str, reason: &str| LakeError::TableFeature {
        root: root.to_string(),
        feature: feature.to_string(),
        reason: reason.to_string(),
    };
    let config = |key: &str| {
        snapshot
            .configuration
            .get(key)
            .map(|v| v.to_ascii_lowercase())
    };
    if config("delta.appendOnly").as_deref() == Some("true") {
        return Err(refuse(
            "appendOnly",
            "the table is append-only (delta.appendOnly = true); it forbids removing rows",
        ));
    }
    if config("delta.enableChangeDataFeed").as_deref() == Some("true") {
        return Err(refuse(
            "changeDataFeed",
            "the change data feed is enabled; a DELETE must write change data files, which Lethe does not",
        ));
    }
    if config("delta.columnMapping.mode").is_some_and(|m| m != "none") {
        return Err(refuse(
            "columnMapping",
            "column mapping is on; physical column names differ from the schema",
        ));
    }
    if config("delta.enableRowTracking").as_deref() == Some("true") {
        return Err(refuse(
            "rowTracking",
            "row tracking is on; rewritten rows would have to keep their row ids",
        ));
    }
    if config("delta.enableInCommitTimestamps").as_deref() == Some("true") {
        return Err(refuse(
            "inCommitTimestamp",
            "in-commit timestamps are on; Lethe does not write them",
        ));
    }
    for feature in &snapshot.features {
        let f = feature.as_str();
        let allowed = HONOURED.contains(&f)
            || f == "deletionVectors"
            || f == "appendOnly"
            || f == "changeDataFeed";
        if !allowed {
            return Err(refuse(
                f,
                "Lethe cannot honour this table feature when it rewrites files",
            ));
        }
    }
    Ok(())
}
