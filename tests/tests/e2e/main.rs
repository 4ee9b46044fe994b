//! End-to-end tests outside the HTTP API: the lake engine on Parquet files from other writers
//! (`../shared/testdata`) and the worker command line against a real store.

mod lake_parquet_testing;
mod spark_lake;
mod worker_cli;

/// Copies the folder `from` (recursively) to `to`.
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
