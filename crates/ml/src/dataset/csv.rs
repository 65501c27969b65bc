//! CSV datasets.
//!
//! Format: UTF-8 text, one sample per line, fields separated by `,` (spaces around a field are
//! ignored). One column is the label (column 1 unless the task's `label_column` says otherwise:
//! [`LabelColumn`]), a decimal integer in `0..classes`; the other columns, in order, are the
//! features, parsed as `f32` by Rust's correctly rounded `str::parse` (so `0.1` gives the same
//! bits everywhere); NaN and infinities are rejected. Every data line has the same number of
//! columns (at least 2). Blank lines are skipped. The first non-blank line is a header, and
//! skipped, if any of its fields is not a number.

use std::path::Path;

use super::{Dataset, DatasetError};
use crate::task::LabelColumn;

pub(super) fn load(
    path: &Path,
    classes: u32,
    label_column: LabelColumn,
) -> Result<Dataset, DatasetError> {
    let bytes = std::fs::read(path)
        .map_err(|source| DatasetError::Io { path: path.to_path_buf(), source })?;
    let text = String::from_utf8(bytes).map_err(|e| DatasetError::Parse {
        path: path.to_path_buf(),
        line: 1,
        column: 1,
        reason: format!("not UTF-8 text ({e})"),
    })?;
    let mut features = Vec::new();
    let mut labels = Vec::new();
    let mut columns = 0usize;
    let mut label_at = 0usize;
    let mut first = true;
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if first {
            first = false;
            if fields.iter().any(|f| f.parse::<f64>().is_err()) {
                continue; // header
            }
        }
        if columns == 0 {
            if fields.len() < 2 {
                return Err(DatasetError::Parse {
                    path: path.to_path_buf(),
                    line: line_no,
                    column: 1,
                    reason: "a data line needs a label and at least one feature".into(),
                });
            }
            columns = fields.len();
            label_at = match label_column {
                LabelColumn::First => 0,
                LabelColumn::Last => columns - 1,
                LabelColumn::Number(n) => match usize::try_from(n) {
                    Ok(n) if (1..=columns).contains(&n) => n - 1,
                    _ => {
                        return Err(DatasetError::Parse {
                            path: path.to_path_buf(),
                            line: line_no,
                            column: 1,
                            reason: format!(
                                "label_column = {n}, but a data line has {columns} columns"
                            ),
                        })
                    }
                },
            };
        } else if fields.len() != columns {
            return Err(DatasetError::ColumnMismatch {
                path: path.to_path_buf(),
                line: line_no,
                expected: columns,
                found: fields.len(),
            });
        }
        let field = fields[label_at];
        let label: u64 = field.parse().map_err(|_| DatasetError::Parse {
            path: path.to_path_buf(),
            line: line_no,
            column: label_at + 1,
            reason: format!(
                "label {field:?} (label_column = {label_column}) is not a non-negative integer"
            ),
        })?;
        if label >= u64::from(classes) {
            return Err(DatasetError::LabelOutOfRange {
                path: path.to_path_buf(),
                index: labels.len(),
                label,
                classes,
            });
        }
        labels.push(label as u32);
        for (c, f) in fields.iter().enumerate().filter(|&(c, _)| c != label_at) {
            let v: f32 = f.parse().map_err(|_| DatasetError::Parse {
                path: path.to_path_buf(),
                line: line_no,
                column: c + 1,
                reason: format!("{f:?} is not a number"),
            })?;
            if !v.is_finite() {
                return Err(DatasetError::NonFinite {
                    path: path.to_path_buf(),
                    line: line_no,
                    column: c + 1,
                });
            }
            features.push(v);
        }
    }
    if labels.is_empty() {
        return Err(DatasetError::Empty { path: path.to_path_buf() });
    }
    let width = (columns - 1) as u32;
    Dataset::from_parts(path.to_path_buf(), features, labels, vec![width], classes)
}
