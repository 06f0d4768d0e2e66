//! Writing an output file without replacing anything that is not ours to replace.
//!
//! Every writer of the library ([`save_model`](super::save_model), [`save_weights`](super::save_weights)
//! and so [`ModelCheckpoint`](crate::training::callbacks::ModelCheckpoint),
//! [`save_keras`](super::save_keras), [`write_npy`](crate::io::npy::write_npy)) goes through
//! [`write_output`], which decides by what is at the path:
//!
//! | at the path | what happens |
//! |---|---|
//! | nothing, or a regular file | a temporary file in the same directory is written, fsynced, given the old file's permission bits, renamed over the path, and the directory is fsynced: readers see the old file or the new one, never a partial one |
//! | a symlink | followed (a chain, up to 40 links, dangling ones included); the same rules apply to what it points to, so the link stays a link |
//! | a character device, a FIFO (or another special file) | written through, as `np.save` and a shell's `>` do: `/dev/null` stays `/dev/null`, a FIFO's reader gets the bytes |
//! | a directory | an error |
//! | a regular file without any write permission bit | an error, even for root, who could otherwise replace it |
//!
//! Temporaries are named `.<name>.frostnet-tmp-<pid>-<n>`. A save that is killed leaves its
//! temporary behind; the next save to the same path removes every such leftover whose process
//! is gone (Linux: no `/proc/<pid>`), so leftovers do not pile up.

use crate::error::{Error, Result};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The marker between a file's name and the pid in the name of its temporaries.
const TMP_MARKER: &str = ".frostnet-tmp-";

/// Symlinks followed before giving up, as Linux's `MAXSYMLINKS`.
const MAX_LINKS: usize = 40;

fn file_err(path: &str, message: impl std::fmt::Display) -> Error {
    Error::File {
        path: path.into(),
        message: message.to_string(),
    }
}

fn io_err(path: &str) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::Io {
        path: path.into(),
        source: e,
    }
}

/// Writes `bytes` to `path` by the rules of the [module](self).
pub(crate) fn write_atomic(path: &str, bytes: &[u8]) -> Result<()> {
    write_output(path, |w| w.write_all(bytes))
}

/// Writes to `path` by the rules of the [module](self); `write` produces the content (buffered).
pub fn write_output(
    path: &str,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<()> {
    let target = resolve_links(path)?;
    match std::fs::metadata(&target) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => replace(path, &target, None, write),
        Err(e) => Err(io_err(path)(e)),
        Ok(m) if m.is_dir() => Err(file_err(path, "is a directory")),
        Ok(m) if m.is_file() => {
            if is_read_only(&m) {
                return Err(file_err(
                    path,
                    "is read-only (no write permission bit): not replacing it",
                ));
            }
            // Opening for writing (without truncating) asks the OS whether we may write it.
            std::fs::OpenOptions::new()
                .write(true)
                .open(&target)
                .map_err(io_err(path))?;
            replace(path, &target, Some(m.permissions()), write)
        }
        Ok(_) => write_through(path, &target, write),
    }
}

#[cfg(unix)]
fn is_read_only(m: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    m.permissions().mode() & 0o222 == 0
}

#[cfg(not(unix))]
fn is_read_only(m: &std::fs::Metadata) -> bool {
    m.permissions().readonly()
}

/// Follows symlinks from `path` to the first thing that is not one (which may not exist).
fn resolve_links(path: &str) -> Result<PathBuf> {
    let mut p = PathBuf::from(path);
    for _ in 0..MAX_LINKS {
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                let link = std::fs::read_link(&p).map_err(io_err(path))?;
                p = match p.parent() {
                    Some(dir) => dir.join(link),
                    None => link,
                };
            }
            _ => return Ok(p),
        }
    }
    Err(file_err(path, format!("more than {MAX_LINKS} symlinks")))
}

/// Devices and FIFOs: open for writing (no truncation, no rename) and write.
fn write_through(
    path: &str,
    target: &Path,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<()> {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(target)
        .map_err(io_err(path))?;
    let mut w = std::io::BufWriter::new(f);
    write(&mut w).and_then(|()| w.flush()).map_err(io_err(path))
}

/// Numbers the temporaries of one process, so two threads saving to one path do not collide.
static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Regular files: a temporary in the same directory, fsync, rename, fsync of the directory.
fn replace(
    path: &str,
    target: &Path,
    permissions: Option<std::fs::Permissions>,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<()> {
    let name = target
        .file_name()
        .ok_or_else(|| file_err(path, "not a file path"))?
        .to_string_lossy()
        .into_owned();
    let dir = target
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    clean_leftovers(dir, &name);
    let tmp = dir.join(format!(
        ".{name}{TMP_MARKER}{}-{}",
        std::process::id(),
        TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        let mut w = std::io::BufWriter::new(f);
        write(&mut w)?;
        let f = w.into_inner().map_err(|e| e.into_error())?;
        if let Some(p) = permissions {
            f.set_permissions(p)?;
        }
        f.sync_all()?;
        std::fs::rename(&tmp, target)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io_err(path))
}

/// Makes the rename durable: on Linux a rename is only on disk once its directory is fsynced.
#[cfg(unix)]
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> std::io::Result<()> {
    Ok(())
}

/// Removes `.<name>.frostnet-tmp-<pid>-<n>` files in `dir` whose process is gone: what saves
/// killed mid-write leave. Best effort: a leftover that cannot be removed is left.
fn clean_leftovers(dir: &Path, name: &str) {
    let prefix = format!(".{name}{TMP_MARKER}");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(rest) = file_name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && process_is_gone(pid) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Whether no process has id `pid`. Only Linux can tell (through `/proc`); elsewhere leftovers
/// are kept rather than risk deleting a live save's temporary.
fn process_is_gone(pid: u32) -> bool {
    cfg!(target_os = "linux")
        && Path::new("/proc/self").exists()
        && !Path::new("/proc").join(pid.to_string()).exists()
}
