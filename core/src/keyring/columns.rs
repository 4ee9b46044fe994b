//! Encrypting and decrypting whole columns of cells (`docs/encryption.md`, cell envelope v1).
//!
//! A plain value is sealed as its canonical text (a string as is; numbers, booleans, dates and
//! RFC 3339 timestamps as Arrow prints them), so decrypting gives back text that casts to the
//! declared type.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::builder::{BinaryBuilder, StringBuilder};
use arrow_array::{Array, ArrayRef, BinaryArray, StringArray};
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use arrow_schema::{ArrowError, DataType};

use super::Dek;
use super::cell::{CellContext, CellError, decrypt_cell, encrypt_cell};
use crate::domain::SubjectId;

/// Unwrapped DEKs of the subjects of one batch, by subject id.
pub type BatchKeys = HashMap<String, (SubjectId, Dek)>;

/// Why a column could not be encrypted or decrypted.
#[derive(Debug, thiserror::Error)]
pub enum CellsError {
    /// A row's owner has no key in the batch's keys (a bug, or the subject was shredded).
    #[error("row {row}: no data key for the row's subject")]
    MissingKey {
        /// Row index in the batch (0-based).
        row: usize,
    },
    /// A cell failed to decrypt.
    #[error("row {row}: {source}")]
    Cell {
        /// Row index in the batch (0-based).
        row: usize,
        /// Why.
        #[source]
        source: CellError,
    },
    /// Arrow could not format or cast the values.
    #[error(transparent)]
    Arrow(#[from] ArrowError),
}

/// Seals every non-null value of `values` with the DEK of the subject in `owners` on the same
/// row, bound to `dataset` and `column`. A row whose owner is null gets a null cell.
///
/// # Errors
/// [`CellsError::MissingKey`] when an owner has no key in `keys`.
pub fn encrypt_column(
    dataset: &str,
    column: &str,
    values: &ArrayRef,
    owners: &StringArray,
    keys: &BatchKeys,
) -> Result<BinaryArray, CellsError> {
    let text: Option<&StringArray> = values.as_any().downcast_ref::<StringArray>();
    let formatter = match text {
        Some(_) => None,
        None => Some(ArrayFormatter::try_new(
            values.as_ref(),
            &FormatOptions::default(),
        )?),
    };
    let mut out = BinaryBuilder::with_capacity(values.len(), values.len() * 64);
    let mut scratch = String::new();
    for row in 0..values.len() {
        let (true, Some(owner)) = (
            values.is_valid(row),
            owners.is_valid(row).then(|| owners.value(row)),
        ) else {
            out.append_null();
            continue;
        };
        let (subject, dek) = keys.get(owner).ok_or(CellsError::MissingKey { row })?;
        let ctx = CellContext {
            dataset,
            column,
            subject_id: subject,
        };
        let plaintext: &[u8] = match (text, &formatter) {
            (Some(t), _) => t.value(row).as_bytes(),
            (None, Some(f)) => {
                scratch.clear();
                use std::fmt::Write;
                write!(scratch, "{}", f.value(row)).map_err(|e| {
                    ArrowError::ComputeError(format!("formatting a cell of {column}: {e}"))
                })?;
                scratch.as_bytes()
            }
            (None, None) => unreachable!("a formatter exists for non-text columns"),
        };
        out.append_value(encrypt_cell(dek, &ctx, plaintext));
    }
    Ok(out.finish())
}

/// Opens the cells of `envelopes` that belong to `subject` (rows where `owners` holds it) with
/// `dek`, and returns them cast to `to`; every other row is null (another person's data is
/// never decrypted, GDPR Art. 15(4)).
///
/// # Errors
/// [`CellsError::Cell`] for a cell that does not authenticate (tampered, moved, wrong key).
pub fn decrypt_column(
    dataset: &str,
    column: &str,
    envelopes: &BinaryArray,
    owners: &StringArray,
    subject: &SubjectId,
    dek: &Dek,
    to: &DataType,
) -> Result<ArrayRef, CellsError> {
    let ctx = CellContext {
        dataset,
        column,
        subject_id: subject,
    };
    let mut out = StringBuilder::new();
    for row in 0..envelopes.len() {
        if envelopes.is_null(row) || !owners.is_valid(row) || owners.value(row) != subject.as_str()
        {
            out.append_null();
            continue;
        }
        let plaintext = decrypt_cell(dek, &ctx, envelopes.value(row))
            .map_err(|source| CellsError::Cell { row, source })?;
        let text = String::from_utf8(plaintext).map_err(|_| CellsError::Cell {
            row,
            source: CellError::WrongKeyOrTampered,
        })?;
        out.append_value(text);
    }
    let text: ArrayRef = Arc::new(out.finish());
    if to == &DataType::Utf8 {
        return Ok(text);
    }
    Ok(arrow_cast::cast(&text, to)?)
}
