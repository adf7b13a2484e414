//! Atomic file writes: a temporary file in the target's directory, fsync,
//! rename, fsync of the directory. On failure the temporary file is removed
//! and the target is untouched, so a reader sees the old file, the new file,
//! or no file, never half of one.
//!
//! The file ends up with the permissions any new file gets (0666 less the
//! process's umask, so 0644 under the usual 022): a temporary file is
//! created owner-only by default, and a report or saved case that only its
//! writer can read is useless as a CI artifact or to a colleague replaying
//! it. Asking open(2) for 0666 lets the kernel apply the umask itself.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn with_context(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

fn temp_with(dir: &Path, bytes: &[u8]) -> io::Result<NamedTempFile> {
    let mut tmp = tempfile::Builder::new()
        .prefix(".harness-")
        .suffix(".tmp")
        .permissions(fs::Permissions::from_mode(0o666))
        .tempfile_in(dir)
        .map_err(|e| with_context(e, "cannot create a temporary file in", dir))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| with_context(e, "cannot write a temporary file in", dir))?;
    Ok(tmp)
}

/// Make a rename durable. Some file systems refuse fsync on directories;
/// the rename itself has happened, so that is not an error.
fn sync_dir(dir: &Path) {
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Write `bytes` to `path` atomically, replacing an existing file.
pub fn write_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = parent_of(path);
    let tmp = temp_with(dir, bytes)?;
    // On error the returned PersistError owns the temporary file, which is
    // deleted when it drops.
    tmp.persist(path)
        .map_err(|e| with_context(e.error, "cannot rename into", path))?;
    sync_dir(dir);
    Ok(())
}

/// Write `bytes` atomically to the first of `candidates` that does not
/// exist yet (never replacing a file), and return its path.
pub fn write_new_file(
    dir: &Path,
    candidates: impl IntoIterator<Item = PathBuf>,
    bytes: &[u8],
) -> io::Result<PathBuf> {
    let mut tmp = temp_with(dir, bytes)?;
    for candidate in candidates {
        match tmp.persist_noclobber(&candidate) {
            Ok(_) => {
                sync_dir(dir);
                return Ok(candidate);
            }
            Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => tmp = e.file,
            Err(e) => return Err(with_context(e.error, "cannot rename into", &candidate)),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("every candidate file name in {} is taken", dir.display()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn replaces_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("a.txt");
        write_file(&p, b"one").expect("write");
        write_file(&p, b"two").expect("write");
        assert_eq!(fs::read(&p).expect("read"), b"two");
        assert_eq!(names(dir.path()), vec!["a.txt"]);
    }

    #[test]
    fn never_clobbers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        fs::write(&a, b"old").expect("seed");
        let got = write_new_file(dir.path(), [a.clone(), b.clone()], b"new").expect("write");
        assert_eq!(got, b);
        assert_eq!(fs::read(&a).expect("read"), b"old");
        assert_eq!(fs::read(&b).expect("read"), b"new");
        let err = write_new_file(dir.path(), [a.clone(), b.clone()], b"x").expect_err("taken");
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(names(dir.path()), vec!["a", "b"]);
    }

    /// The umask of this process, read without changing it for good: a
    /// child shell reports the umask it inherited.
    fn umask() -> u32 {
        let out = std::process::Command::new("sh")
            .args(["-c", "umask"])
            .output()
            .expect("sh -c umask");
        let text = String::from_utf8_lossy(&out.stdout);
        u32::from_str_radix(text.trim(), 8).expect("octal umask")
    }

    #[test]
    fn files_are_readable_like_any_new_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mask = umask();
        let p = dir.path().join("a.json");
        write_file(&p, b"{}").expect("write");
        let q = write_new_file(dir.path(), [dir.path().join("b.json")], b"{}").expect("write");
        // What `touch` would give: 0666 less the umask (0644 under 022),
        // not the 0600 of a bare temporary file.
        let plain = dir.path().join("plain");
        fs::File::create(&plain).expect("create");
        let expect = fs::metadata(&plain).expect("stat").permissions().mode() & 0o777;
        assert_eq!(expect, 0o666 & !mask);
        for f in [&p, &q] {
            let mode = fs::metadata(f).expect("stat").permissions().mode() & 0o777;
            assert_eq!(mode, expect, "{}: {mode:o}", f.display());
        }
    }

    #[test]
    fn missing_directory_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("nope").join("a.txt");
        let err = write_file(&p, b"x").expect_err("no dir");
        assert!(err.to_string().contains("nope"), "{err}");
    }
}
