//! `#[derive(Indexed)]` for `cache-core`. Use it through `cache_core::Indexed`.
