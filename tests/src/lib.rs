//! End-to-end test crate for Lethe; the tests live in `tests/tests/`.
