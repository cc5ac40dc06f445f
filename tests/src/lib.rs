//! Integration tests live in `tests/`; this library holds nothing.
#![forbid(unsafe_code)]
