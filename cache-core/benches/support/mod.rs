//! Shared by the benchmark binaries: the workload and the client-go-style baseline.

#![allow(dead_code)]

pub mod baseline;
pub mod workload;
