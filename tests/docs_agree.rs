//! The attribute's arguments are listed in three places that users read or
//! meet: the parser's list (in the error for an unknown argument), the
//! attribute's rustdoc table (what an editor shows) and the README's table.
//! They must name the same arguments.

use std::collections::BTreeSet;

/// The first column of each row of the table whose header starts with
/// `header`, in `text` (lines may carry a `/// ` prefix).
fn table_arguments(text: &str, header: &str) -> BTreeSet<String> {
    let mut rows = text
        .lines()
        .map(|line| line.trim_start().trim_start_matches("///").trim())
        .skip_while(|line| !line.starts_with(header))
        .skip(2);
    let mut names = BTreeSet::new();
    for row in rows.by_ref() {
        let Some(cell) = row.strip_prefix("| `") else {
            break;
        };
        names.insert(cell.split('`').next().unwrap().to_owned());
    }
    names
}

#[test]
fn the_parser_the_rustdoc_and_the_readme_list_the_same_arguments() {
    let args = include_str!("../cached-api-macro/src/args.rs");
    let valid = args
        .lines()
        .find_map(|line| line.strip_prefix("const VALID: &str = \""))
        .expect("the parser's list of arguments");
    let parsed: BTreeSet<String> = valid
        .trim_end_matches("\";")
        .split(", ")
        .map(str::to_owned)
        .collect();
    let rustdoc = table_arguments(
        include_str!("../cached-api-macro/src/lib.rs"),
        "| argument | form | meaning |",
    );
    let readme = table_arguments(
        include_str!("../README.md"),
        "| argument | form | meaning |",
    );
    assert!(parsed.len() >= 16, "{parsed:?}");
    assert_eq!(rustdoc, parsed, "the attribute's rustdoc table");
    assert_eq!(readme, parsed, "the README's table");
}
