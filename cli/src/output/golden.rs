//! Golden files: a renderer's output compared with `cli/tests/golden/<name>`; `BLESS=1`
//! rewrites the file instead.

use std::path::PathBuf;

/// Asserts that `actual` is the golden file `name`'s text (or writes it with `BLESS=1`).
pub(crate) fn check(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("BLESS").is_some() {
        std::fs::create_dir_all(path.parent().expect("a folder")).expect("create golden dir");
        std::fs::write(&path, actual).expect("write golden file");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {} ({e}); run with BLESS=1 to write it",
            path.display()
        )
    });
    assert_eq!(
        actual,
        expected,
        "{} differs; run with BLESS=1 to accept the new output",
        path.display()
    );
}
