//! Shared by the benchmark binaries: the workload and one size's data of it, the
//! embedded-source pods and the client-go-style baseline.

#![allow(dead_code)]

pub mod baseline;
pub mod data;
pub mod pods;
pub mod workload;

use std::path::{Path, PathBuf};

/// Where criterion keeps its estimates: `CRITERION_HOME`, or `criterion` in the target
/// directory.
pub fn criterion_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return home.into();
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("criterion")
}
