//! The readers take paths, so each input is written to one scratch file per process (in
//! /dev/shm when it exists, to stay in memory).

use std::path::PathBuf;

pub fn scratch(ext: &str) -> String {
    let dir = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    dir.join(format!("frostnet-fuzz-{}.{ext}", std::process::id()))
        .to_string_lossy()
        .into_owned()
}

/// Writes `data` to the scratch file and returns its path.
pub fn input(data: &[u8], ext: &str) -> String {
    let path = scratch(ext);
    std::fs::write(&path, data).expect("scratch file");
    path
}
