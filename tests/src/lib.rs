//! Integration tests live in `tests/`; this library holds the harnesses they share.

/// A real etcd for the etcd source's tests.
pub mod etcd;
