//! Lethe service library.
