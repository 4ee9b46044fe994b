//! jobs (work in progress)
