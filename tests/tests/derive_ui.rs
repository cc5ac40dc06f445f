//! Compile-time behaviour of `#[derive(Indexed)]`: every diagnostic has a UI test whose expected
//! output (`.stderr`) is committed; the pass cases must compile and run.
//!
//! Regenerate the expected output after an intended change with
//! `TRYBUILD=overwrite cargo test -p tests --test derive_ui`, and review the diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/fail/*.rs");
    t.pass("tests/ui/pass/*.rs");
}
