//! Shared by the benchmark binaries: the workload and one size's data of it, the
//! embedded-source pods and the client-go-style baseline.

#![allow(dead_code)]

pub mod baseline;
pub mod data;
pub mod pods;
pub mod workload;
