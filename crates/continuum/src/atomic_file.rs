//! Files written whole or not at all: the content goes to a temporary file in
//! the same directory, is flushed to disk, and is renamed over the target. A
//! failed or interrupted write leaves the previous file as it was.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// The temporary name `path` is written under before the rename: a hidden file
/// in the same directory (a rename is atomic only within one file system),
/// named after the process so that two runs never share one.
pub fn temporary_name(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "output".into(), |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// Writes `path` atomically: `write` fills a buffered temporary file, which is
/// synced and renamed to `path` only if every write succeeded. Missing parent
/// directories are created. On error the temporary file is removed and `path`
/// is untouched.
pub fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>,
) -> io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = temporary_name(path);
    let result = (|| {
        let mut out = BufWriter::new(File::create(&tmp)?);
        write(&mut out)?;
        let file = out.into_inner().map_err(io::IntoInnerError::into_error)?;
        put_in_place(&file, &tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Finishes a file written under a temporary name: syncs `file` (written at
/// `temporary`, e.g. [`temporary_name`]) to disk and renames it to `path`. For
/// files written in pieces (a stream of rows) rather than through
/// [`write_atomically`].
pub fn put_in_place(file: &File, temporary: &Path, path: &Path) -> io::Result<()> {
    file.sync_all()?;
    std::fs::rename(temporary, path)
}

/// Writes `bytes` to `path` atomically (see [`write_atomically`]).
pub fn write_bytes_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomically(path, |out| out.write_all(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("continuum-atomic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    #[test]
    fn a_failed_write_keeps_the_old_file_and_leaves_no_temporary() {
        let path = scratch("kept.json");
        write_bytes_atomically(&path, b"old").unwrap();
        let err = write_atomically(&path, |out| {
            out.write_all(b"partial")?;
            Err(io::Error::other("disk full"))
        });
        assert!(err.is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert!(!temporary_name(&path).exists());
        write_bytes_atomically(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
    }
}
