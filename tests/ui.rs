//! Compile-time behaviour of the attribute: `pass/` must build, each
//! `fail/` case must fail with exactly its reviewed `.stderr`.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/fail/*.rs");
}
