//! End-to-end tests outside the HTTP API: the lake engine on Parquet files from other writers
//! (`../shared/testdata`) and the worker command line against a real store.

mod lake_parquet_testing;
mod spark_lake;
mod worker_cli;
