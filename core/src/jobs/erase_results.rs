//! The result of each erasure request of a batch, summed once every task of its plan ended:
//! [`BatchResults`] reads the plan's and the tasks' results once; [`BatchResults::for_request`]
//! gives one request its part (files, rows, holds, a table's commit).

use std::collections::BTreeMap;

use super::results::{
    BatchCounts, ErasurePlan, ErasureResult, Kept, ResultDataset, RewrittenFile, SurgeryCounts,
    TaskResult, TaskStatus,
};
use crate::store::Job;

/// An erasure plan's result and its tasks' results, read once when the plan ends, so that
/// each request of its batch is summed from them ([`BatchResults::for_request`]) without
/// parsing them again. A plan or task result that does not parse counts as empty.
pub struct BatchResults {
    plan: ErasurePlan,
    results: Vec<TaskResult>,
    requests: u64,
    tasks: u64,
}

impl BatchResults {
    /// Reads the results of `plan` and its `tasks`.
    pub fn read(plan: &Job, tasks: &[Job]) -> Self {
        Self {
            plan: plan
                .result
                .clone()
                .and_then(|r| serde_json::from_value(r).ok())
                .unwrap_or_default(),
            results: tasks
                .iter()
                .filter_map(|t| t.result.clone())
                .filter_map(|r| serde_json::from_value(r).ok())
                .collect(),
            requests: plan.batch().len() as u64,
            tasks: tasks.len() as u64,
        }
    }

    /// The result of erasure request `request_id` once every task of the plan succeeded: per
    /// dataset, files scanned by the plan, the files that held the subject and were
    /// rewritten, the subject's rows removed, and the bytes read and written by the whole
    /// batch (shared by every request in it).
    pub fn for_request(&self, request_id: &str) -> ErasureResult {
        let (plan_result, results) = (&self.plan, &self.results);
        // Files a hold placed after the plan kept for this request (see `erase_file`).
        let held_after_plan: Vec<&Kept> = results
            .iter()
            .flat_map(|r| r.held.iter().flatten())
            .filter(|h| h.request_id.as_deref() == Some(request_id))
            .collect();
        let empty = BTreeMap::new();
        let mine = plan_result.requests.get(request_id).unwrap_or(&empty);
        let mut total_rows = 0u64;
        let datasets: Vec<ResultDataset> = plan_result
            .datasets
            .iter()
            .map(|d| {
                let name = d.dataset.as_str();
                let in_dataset: Vec<&TaskResult> =
                    results.iter().filter(|r| r.dataset == name).collect();
                let sum = |f: fn(&TaskResult) -> u64| in_dataset.iter().map(|r| f(r)).sum::<u64>();
                let surgery = |f: fn(&SurgeryCounts) -> u64| {
                    in_dataset
                        .iter()
                        .filter_map(|r| r.surgery.as_ref())
                        .map(f)
                        .sum::<u64>()
                };
                let held_here: Vec<&Kept> = in_dataset
                    .iter()
                    .flat_map(|r| r.held.iter().flatten())
                    .filter(|h| h.request_id.as_deref() == Some(request_id))
                    .collect();
                // A file kept whole: by a hold placed after the plan, or because every row of
                // the subject in it is shared with a held subject (nothing was rewritten).
                // Otherwise the shared rows were kept in a file rewritten all the same.
                let kept_whole = |h: &Kept| {
                    h.shared_rows.is_none()
                        || !in_dataset.iter().any(|r| {
                            Some(r.file.as_str()) == h.file.as_deref()
                                && r.status == TaskStatus::Rewritten
                        })
                };
                let located = mine.get(name);
                // A table task names no file when a hold placed after the plan kept the
                // subject out of it: the subject's every file in the table is kept.
                let table_held = held_here
                    .iter()
                    .any(|h| h.file.is_none() && h.shared_rows.is_none());
                let held_files: Vec<&str> = if table_held {
                    located
                        .map(|l| l.files.iter().map(String::as_str).collect())
                        .unwrap_or_default()
                } else {
                    held_here
                        .iter()
                        .filter(|h| kept_whole(h))
                        .filter_map(|h| h.file.as_deref())
                        .collect()
                };
                let shared_rows: u64 = held_here
                    .iter()
                    .filter(|h| !kept_whole(h))
                    .filter_map(|h| h.shared_rows)
                    .sum();
                let rewritten: Vec<String> = located
                    .map(|l| l.files.clone())
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|f| !held_files.contains(&f.as_str()))
                    .collect();
                // A table's task: its commit, and the files it replaced.
                let table_task = in_dataset.iter().find(|r| r.table.is_some());
                // Per file: its size and ETag before and after the rewrite (from the file's
                // task; for a table, before from the plan's locate, after and the new file
                // from the table's task).
                let files: Vec<RewrittenFile> = rewritten
                    .iter()
                    .map(|file| {
                        if let Some(task) = table_task {
                            let replaced = task.replaced.iter().flatten().find(|r| r.file == *file);
                            return RewrittenFile {
                                file: file.clone(),
                                before: d.versions.as_ref().and_then(|v| v.get(file).cloned()),
                                after: replaced.and_then(|r| r.after.clone()),
                                replaced_by: replaced.and_then(|r| r.replaced_by.clone()),
                            };
                        }
                        let versions = in_dataset
                            .iter()
                            .find(|r| r.file == *file)
                            .and_then(|r| r.versions.clone())
                            .unwrap_or_default();
                        RewrittenFile {
                            file: file.clone(),
                            before: versions.before,
                            after: versions.after,
                            replaced_by: None,
                        }
                    })
                    .collect();
                let rows_kept: u64 = held_files
                    .iter()
                    .filter_map(|f| located.and_then(|l| l.file_rows.get(*f)))
                    .sum();
                let rows_removed = located
                    .map_or(0, |l| l.rows)
                    .saturating_sub(rows_kept + shared_rows);
                total_rows += rows_removed;
                ResultDataset {
                    dataset: name.to_string(),
                    files_scanned: d.files_scanned,
                    files_rewritten: rewritten.len() as u64,
                    rows_removed,
                    bytes_read: d.bytes_read + sum(|r| r.bytes_read),
                    bytes_written: sum(|r| r.bytes_written),
                    surgery: SurgeryCounts {
                        row_groups_rewritten: surgery(|s| s.row_groups_rewritten),
                        row_groups_copied: surgery(|s| s.row_groups_copied),
                        bytes_reencoded: surgery(|s| s.bytes_reencoded),
                        bytes_copied: surgery(|s| s.bytes_copied),
                        bytes_copied_server_side: surgery(|s| s.bytes_copied_server_side),
                    },
                    rewritten,
                    files,
                    table: table_task.and_then(|t| t.table.as_deref().cloned()),
                }
            })
            .collect();
        let mut kept: Vec<Kept> = plan_result
            .kept
            .get(request_id)
            .cloned()
            .unwrap_or_default();
        kept.extend(held_after_plan.into_iter().map(|h| Kept {
            request_id: None,
            placed_after_plan: h.shared_rows.is_none(),
            ..h.clone()
        }));
        ErasureResult {
            kept,
            rows_removed: total_rows,
            batch: BatchCounts {
                requests: self.requests,
                tasks: self.tasks,
                rows_removed: results.iter().map(|r| r.rows_removed).sum(),
            },
            datasets,
        }
    }
}

/// The result of erasure request `request_id` of `plan` (see [`BatchResults::for_request`]);
/// for one request: a plan's end reads its results once with [`BatchResults::read`].
pub fn erasure_result(plan: &Job, tasks: &[Job], request_id: &str) -> ErasureResult {
    BatchResults::read(plan, tasks).for_request(request_id)
}
