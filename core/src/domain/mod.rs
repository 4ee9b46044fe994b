//! domain (work in progress)
