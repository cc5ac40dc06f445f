//! Shared by the benchmark binaries: the workload, the embedded-source pods and the
//! client-go-style baseline.

#![allow(dead_code)]

pub mod baseline;
pub mod pods;
pub mod workload;
