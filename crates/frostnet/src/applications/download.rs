//! Keras's `keras.utils.get_file` for pretrained weights: the same URLs, the same cache
//! (`$KERAS_HOME/models`, else `~/.keras/models`, so files Keras fetched already are reused), the
//! same hash check. The download goes to a temporary file beside the target, is hashed while it
//! streams, and is renamed into place only when complete and verified: a failed, cut-off or
//! mismatching download leaves nothing in the cache.
//!
//! Tests (and mirrors) replace the host with `FROSTNET_WEIGHTS_BASE_URL`: a URL
//! `https://storage.googleapis.com/PATH` is fetched from `$FROSTNET_WEIGHTS_BASE_URL/PATH`.

use crate::error::{Error, Result};
use md5::Digest;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Where every Keras application's weights live.
pub(crate) const KERAS_HOST: &str = "https://storage.googleapis.com/";

/// The environment variable that replaces [`KERAS_HOST`] (for tests and mirrors).
pub const BASE_URL_ENV: &str = "FROSTNET_WEIGHTS_BASE_URL";

/// Keras's cache folder: `$KERAS_HOME`, else `~/.keras`; `/tmp/.keras` when that is not
/// writable, as in Keras.
pub fn keras_home() -> PathBuf {
    if let Some(h) = std::env::var_os("KERAS_HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(h);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from);
    match home {
        Some(h) => h.join(".keras"),
        None => std::env::temp_dir().join(".keras"),
    }
}

/// The URL actually fetched for `origin`, after the base-URL override.
pub fn resolve_url(origin: &str) -> String {
    match (
        std::env::var(BASE_URL_ENV).ok().filter(|b| !b.is_empty()),
        origin.strip_prefix(KERAS_HOST),
    ) {
        (Some(base), Some(path)) => format!("{}/{path}", base.trim_end_matches('/')),
        _ => origin.to_string(),
    }
}

/// A hash Keras publishes: 64 hex digits are SHA-256, anything else MD5 (Keras's `auto`).
fn file_hash(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::Io {
        path: path.display().to_string(),
        source: e,
    })?;
    let mut md5 = md5::Md5::new();
    let mut sha = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::Io {
            path: path.display().to_string(),
            source: e,
        })?;
        if n == 0 {
            break;
        }
        md5.update(&buf[..n]);
        sha.update(&buf[..n]);
    }
    Ok(format!("{:x}|{:x}", md5.finalize(), sha.finalize()))
}

fn matches(hashes: &str, expected: &str) -> bool {
    let (md5, sha) = hashes.split_once('|').expect("two hashes");
    let expected = expected.to_ascii_lowercase();
    if expected.len() == 64 {
        sha == expected
    } else {
        md5 == expected
    }
}

/// `keras.utils.get_file(fname, origin, cache_subdir="models", file_hash=...)`: the cached
/// file if present and (when a hash is given) intact, else downloaded, verified and moved into
/// place. Returns its path.
pub fn get_file(fname: &str, origin: &str, expected_hash: Option<&str>) -> Result<PathBuf> {
    if fname.is_empty() || fname.contains('/') || fname.contains('\\') || fname.starts_with('.') {
        return Err(Error::InvalidConfig(format!(
            "get_file: '{fname}' is not a plain file name"
        )));
    }
    let dir = keras_home().join("models");
    let target = dir.join(fname);
    if target.is_file() {
        match expected_hash {
            None => return Ok(target),
            Some(h) if matches(&file_hash(&target)?, h) => return Ok(target),
            Some(_) => eprintln!(
                "A local file was found at {}, but its hash does not match the original value \
                 of the file; downloading it again.",
                target.display()
            ),
        }
    }
    std::fs::create_dir_all(&dir).map_err(|e| Error::Io {
        path: dir.display().to_string(),
        source: e,
    })?;
    let url = resolve_url(origin);
    let tmp = dir.join(format!(".{fname}.{}.part", std::process::id()));
    let result = download(&url, &tmp, &target).and_then(|()| {
        if let Some(h) = expected_hash {
            let got = file_hash(&tmp)?;
            if !matches(&got, h) {
                return Err(Error::File {
                    path: url.clone(),
                    message: format!(
                        "the downloaded file's hash does not match Keras's published {h} \
                         (md5|sha256 {got}); nothing was written to {}",
                        target.display()
                    ),
                });
            }
        }
        std::fs::rename(&tmp, &target).map_err(|e| Error::Io {
            path: target.display().to_string(),
            source: e,
        })
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map(|()| target)
}

/// Streams `url` into `tmp`, with a progress bar on stderr; any failure is one line naming the
/// URL and the path where the file can be put by hand.
fn download(url: &str, tmp: &Path, target: &Path) -> Result<()> {
    let by_hand = |what: String| Error::File {
        path: url.to_string(),
        message: format!(
            "{what}; download it by other means and put it at {}",
            target.display()
        ),
    };
    // Time limits on connecting and on the response headers only: ureq's body timeout is a
    // budget for the whole body, which a 90 MB file on a slow link would exceed.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(std::time::Duration::from_secs(30)))
        .timeout_recv_response(Some(std::time::Duration::from_secs(60)))
        .build()
        .into();
    let resp = agent
        .get(url)
        .call()
        .map_err(|e| by_hand(format!("cannot download: {e}")))?;
    let len = resp.body().content_length();
    let mut reader = resp.into_body().into_reader();
    let mut file = std::fs::File::create(tmp).map_err(|e| Error::Io {
        path: tmp.display().to_string(),
        source: e,
    })?;
    let bar =
        indicatif::ProgressBar::with_draw_target(len, indicatif::ProgressDrawTarget::stderr());
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "Downloading {msg} {bytes}/{total_bytes} {bar:30} {bytes_per_sec} eta {eta}",
        )
        .expect("static template")
        .progress_chars("━━ "),
    );
    bar.set_message(url.rsplit('/').next().unwrap_or(url).to_string());
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| by_hand(format!("download interrupted after {total} bytes: {e}")))?;
        if n == 0 {
            break;
        }
        file.write_all(&buf[..n]).map_err(|e| Error::Io {
            path: tmp.display().to_string(),
            source: e,
        })?;
        total += n as u64;
        bar.set_position(total);
    }
    bar.finish_and_clear();
    if let Some(len) = len {
        if total != len {
            return Err(by_hand(format!(
                "download cut off: {total} of {len} bytes received"
            )));
        }
    }
    file.sync_all().map_err(|e| Error::Io {
        path: tmp.display().to_string(),
        source: e,
    })?;
    Ok(())
}
