//! lake (work in progress)
