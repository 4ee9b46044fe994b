//! Lethe worker library.
