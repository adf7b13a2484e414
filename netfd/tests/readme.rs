//! The README's "netfd in one screen" compiles and runs as written: its
//! code block is `examples/one_screen.rs` (which cargo builds with the
//! tests) line for line, and running that example's body succeeds.

use std::path::Path;

fn readme_block() -> Vec<String> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("README.md next to the workspace manifest");
    let section = readme
        .split("## netfd in one screen")
        .nth(1)
        .expect("README has a \"netfd in one screen\" section");
    let block = section
        .split("```rust\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .expect("the section starts with a ```rust block");
    block.lines().map(str::to_string).collect()
}

fn example_block() -> Vec<String> {
    let src = include_str!("../examples/one_screen.rs");
    let body = src
        .split("// README BEGIN\n")
        .nth(1)
        .and_then(|rest| rest.split("    // README END").next())
        .expect("markers in examples/one_screen.rs");
    body.lines()
        .map(|l| l.strip_prefix("    ").unwrap_or(l).to_string())
        .collect()
}

#[test]
fn readme_one_screen_is_the_example_verbatim() {
    assert_eq!(readme_block(), example_block());
}

#[test]
fn the_example_runs() {
    #[path = "../examples/one_screen.rs"]
    #[allow(dead_code)]
    mod one_screen;
    one_screen::main().expect("the one-screen example");
}
