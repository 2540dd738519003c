//! The core does no I/O: no async runtime, no RPC, no database, no clock.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::PathBuf;

const FORBIDDEN: &[&str] = &["tokio", "tonic", "rocksdb", "SystemTime", "Instant"];

/// Whole identifiers only: "monotonic" is not "tonic".
fn mentions(text: &str, word: &str) -> bool {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .any(|w| w == word)
}

#[test]
fn the_word_check_finds_what_it_must() {
    assert!(mentions("use tokio::time;", "tokio"));
    assert!(mentions("std::time::Instant::now()", "Instant"));
    assert!(mentions("rocksdb = { workspace = true }", "rocksdb"));
    assert!(!mentions("a monotonic clock", "tonic"));
}

#[test]
fn the_core_depends_on_no_runtime_database_or_clock() {
    // Read at run time, not baked in at compile time: a test binary reused
    // from a build directory shared between clones (CI's cache) must look at
    // the clone it runs for, not the one it was first compiled in.
    let root = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR"),
    );
    let manifest = fs::read_to_string(root.join("Cargo.toml")).unwrap();
    for word in ["tokio", "tonic", "rocksdb"] {
        assert!(!mentions(&manifest, word), "Cargo.toml mentions {word}");
    }
    let mut checked = 0;
    let mut dirs = vec![root.join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = fs::read_to_string(&path).unwrap();
                for word in FORBIDDEN {
                    assert!(!mentions(&text, word), "{} mentions {word}", path.display());
                }
                checked += 1;
            }
        }
    }
    // The rooms, their tests, `message/` and `replica/` are all read.
    assert!(checked >= 30, "only {checked} source files found");
}
