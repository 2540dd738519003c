//! Rust client library and the `commons` CLI with verified reads (issue 10). Not built yet.
