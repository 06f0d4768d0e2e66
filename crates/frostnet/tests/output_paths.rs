//! Saving never replaces what is not ours to replace: regular files are replaced atomically,
//! symlinks are written through to their target, devices and FIFOs are written through, and
//! directories and read-only files are refused. Leftovers of killed saves are cleaned.

use frostnet::io::npy::{read_npy, write_npy};
use frostnet::layers::{Dense, Input};
use frostnet::saving::{load_model, save_keras, save_model, save_weights};
use frostnet::{Error, Model, Sequential, Tensor};

mod common;
use common::Scratch;

fn model() -> Model {
    let mut m = Sequential::named("small");
    m.add(Input::new(&[3])).unwrap();
    m.add(Dense::new(2)).unwrap();
    m
}

fn is_symlink(p: &str) -> bool {
    std::fs::symlink_metadata(p)
        .unwrap()
        .file_type()
        .is_symlink()
}

#[test]
fn a_symlink_is_written_through_and_stays_a_link() {
    let s = Scratch::new("symlink");
    let m = model();
    std::fs::create_dir(s.path("real")).unwrap();
    std::fs::write(s.path("real/m.frostnet"), b"old").unwrap();
    // A relative link, resolved against the link's own directory, not the working directory.
    std::os::unix::fs::symlink("real/m.frostnet", s.path("link.frostnet")).unwrap();
    save_model(&m, &s.path("link.frostnet")).unwrap();
    assert!(is_symlink(&s.path("link.frostnet")));
    assert_eq!(
        load_model(&s.path("real/m.frostnet")).unwrap().summary(),
        m.summary()
    );
    // A dangling link: its target is created.
    std::os::unix::fs::symlink("real/new.keras", s.path("dangling.keras")).unwrap();
    save_keras(&m, &s.path("dangling.keras")).unwrap();
    assert!(is_symlink(&s.path("dangling.keras")));
    assert_eq!(
        load_model(&s.path("real/new.keras")).unwrap().summary(),
        m.summary()
    );
    // No temporaries are left in either directory.
    assert_eq!(s.names(), ["dangling.keras", "link.frostnet", "real"]);
}

#[test]
fn a_fifo_gets_the_bytes_and_stays_a_fifo() {
    use std::os::unix::fs::FileTypeExt;
    let s = Scratch::new("fifo");
    let fifo = s.path("out.npy");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).unwrap())
    };
    let t = Tensor::from_vec(&[2, 3], vec![1., 2., 3., 4., 5., 6.]).unwrap();
    write_npy(&fifo, &t).unwrap();
    let bytes = reader.join().unwrap();
    assert!(std::fs::symlink_metadata(&fifo)
        .unwrap()
        .file_type()
        .is_fifo());
    std::fs::write(s.path("copy.npy"), bytes).unwrap();
    assert_eq!(read_npy(&s.path("copy.npy")).unwrap().data(), t.data());
}

#[test]
fn a_character_device_is_written_through_not_replaced() {
    use std::os::unix::fs::FileTypeExt;
    let m = model();
    save_model(&m, "/dev/null").unwrap();
    save_keras(&m, "/dev/null").unwrap();
    write_npy("/dev/null", &Tensor::zeros(&[2])).unwrap();
    let meta = std::fs::symlink_metadata("/dev/null").unwrap();
    assert!(meta.file_type().is_char_device());
    // A device that fails the write reports it instead of being replaced by a regular file.
    let err = save_model(&m, "/dev/full").unwrap_err();
    assert!(err.to_string().contains("No space left"), "{err}");
    assert!(std::fs::symlink_metadata("/dev/full")
        .unwrap()
        .file_type()
        .is_char_device());
}

#[test]
fn read_only_files_and_directories_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let s = Scratch::new("readonly");
    let m = model();
    let ro = s.path("ro.frostnet");
    std::fs::write(&ro, b"keep me").unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o444)).unwrap();
    // Refused by its mode bits, also when run as root (who could write it anyway).
    let err = save_model(&m, &ro).unwrap_err();
    assert!(
        matches!(&err, Error::File { message, .. } if message.contains("read-only")),
        "{err}"
    );
    assert_eq!(std::fs::read(&ro).unwrap(), b"keep me");
    let err = save_weights(&m, &s.path("")).unwrap_err();
    assert!(err.to_string().contains("is a directory"), "{err}");
    std::fs::create_dir(s.path("d.keras")).unwrap();
    let err = save_keras(&m, &s.path("d.keras")).unwrap_err();
    assert!(err.to_string().contains("is a directory"), "{err}");
    // A writable file keeps its permission bits when replaced.
    let rw = s.path("rw.frostnet");
    std::fs::write(&rw, b"old").unwrap();
    std::fs::set_permissions(&rw, std::fs::Permissions::from_mode(0o640)).unwrap();
    save_model(&m, &rw).unwrap();
    let mode = std::fs::metadata(&rw).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o640);
    assert_eq!(load_model(&rw).unwrap().summary(), m.summary());
}

#[test]
fn leftovers_of_killed_saves_are_cleaned() {
    let s = Scratch::new("leftover");
    let m = model();
    // A process that has exited: its pid names no live process (pids are not reused this fast).
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let dead_tmp = format!(".m.keras.frostnet-tmp-{dead}-0");
    // Pid 1 is alive: its temporary might be a save in progress and must stay.
    let live_tmp = ".m.keras.frostnet-tmp-1-0".to_string();
    let other = format!(".other.keras.frostnet-tmp-{dead}-0");
    for n in [&dead_tmp, &live_tmp, &other] {
        std::fs::write(s.path(n), b"half a file").unwrap();
    }
    save_keras(&m, &s.path("m.keras")).unwrap();
    let names = s.names();
    assert!(!names.contains(&dead_tmp), "{names:?}");
    assert!(names.contains(&live_tmp), "{names:?}");
    // Only leftovers of the path being saved are touched.
    assert!(names.contains(&other), "{names:?}");
    assert!(names.contains(&"m.keras".to_string()));
}
