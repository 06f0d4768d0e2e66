//! Errors about bad files are one line, under ~200 characters, and name the file, the place
//! and the problem, however much garbage the file holds.

use frostnet::io::npy::read_npy;
use frostnet::saving::load_model;
use serde_json::Value;
use std::io::{Read, Write};
use std::path::PathBuf;

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn scratch(name: &str) -> String {
    let dir: PathBuf = std::env::temp_dir().join(format!("frostnet-lines-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name).to_string_lossy().into_owned()
}

fn assert_short(text: &str, path: &str, words: &[&str]) {
    assert!(!text.contains('\n'), "not one line: {text}");
    assert!(text.chars().count() < 200, "{} chars: {text}", text.len());
    assert!(text.starts_with(path), "file not named first: {text}");
    for w in words {
        assert!(text.contains(w), "'{w}' missing: {text}");
    }
}

/// An `.npy` header that is not a Python dict literal: npyz's parser error spans several lines.
#[test]
fn malformed_npy_headers_give_one_short_line() {
    let path = scratch("bad.npy");
    for header in [
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), ".to_string(),
        format!("{{'descr': '<f4', 'shape': ({}), }}", "1, ".repeat(400)),
        "not a dict at all".to_string(),
    ] {
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        let mut h = header.into_bytes();
        h.push(b'\n');
        bytes.extend_from_slice(&(h.len() as u16).to_le_bytes());
        bytes.extend_from_slice(&h);
        bytes.extend_from_slice(&[0; 24]);
        std::fs::write(&path, &bytes).unwrap();
        let e = read_npy(&path).unwrap_err();
        assert_short(&e.to_string(), &path, &[]);
    }
    std::fs::remove_file(&path).ok();
}

/// A config whose input has 400 axes: the shape in the message is cut, not printed whole.
#[test]
fn long_shapes_in_config_errors_are_cut() {
    let src = fixture("cnn_seq.keras");
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&src).unwrap()).unwrap();
    let mut members = Vec::new();
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).unwrap();
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).unwrap();
        members.push((f.name().unwrap().to_string(), bytes));
    }
    let config = &mut members
        .iter_mut()
        .find(|(n, _)| n == "config.json")
        .unwrap()
        .1;
    let mut c: Value = serde_json::from_slice(config).unwrap();
    let mut shape = vec![Value::Null];
    shape.extend(std::iter::repeat_n(Value::from(8), 400));
    c["config"]["layers"][0]["config"]["batch_shape"] = Value::Array(shape);
    *config = c.to_string().into_bytes();
    let path = scratch("long_shape.keras");
    let mut out = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    for (name, bytes) in &members {
        out.start_file(name.as_str(), zip::write::SimpleFileOptions::default())
            .unwrap();
        out.write_all(bytes).unwrap();
    }
    out.finish().unwrap();
    let text = load_model(&path).err().unwrap().to_string();
    assert_short(&text, &path, &["layer '"]);
    assert!(!text.contains("Some("), "{text}");
    std::fs::remove_file(&path).ok();
}

/// Found by cargo-fuzz (docs/FUZZING.md), kept as `fuzz_npy_nested_header.npy`: a 153-byte
/// `.npy` whose header nests `{` 20 deep made npyz's backtracking header parser run for
/// minutes. It is refused before parsing.
#[test]
fn npy_header_nesting_brackets_is_refused_at_once() {
    let path = fixture("fuzz_npy_nested_header.npy");
    let start = std::time::Instant::now();
    let e = read_npy(&path).unwrap_err();
    assert!(start.elapsed().as_secs() < 2, "took {:?}", start.elapsed());
    assert_short(&e.to_string(), &path, &["nests brackets"]);
    // A plain header still reads.
    read_npy(&fixture("cnn_input.npy")).unwrap();
}

/// Found by cargo-fuzz (docs/FUZZING.md), kept as `fuzz_npy_header_longer_than_file.npy`: a
/// 29-byte `.npy` whose version-3 header declares 1,867,382,902 bytes, which npyz allocated
/// before reading. It is refused from the declared length.
#[test]
fn npy_header_longer_than_the_file_is_refused_before_allocating() {
    let path = fixture("fuzz_npy_header_longer_than_file.npy");
    let e = read_npy(&path).unwrap_err();
    assert_short(
        &e.to_string(),
        &path,
        &["header declares 1867382902 bytes but only 17 follow"],
    );
}

/// The same header inside an `.npz` member is refused the same way, naming the member.
#[test]
fn npz_member_header_nesting_brackets_is_refused_at_once() {
    let nested = std::fs::read(fixture("fuzz_npy_nested_header.npy")).unwrap();
    let plain = std::fs::read(fixture("cnn_input.npy")).unwrap();
    let path = std::env::temp_dir().join(format!("frostnet-nested-{}.npz", std::process::id()));
    let write = |members: &[(&str, &[u8])]| {
        let mut z = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
        for (name, bytes) in members {
            z.start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            z.write_all(bytes).unwrap();
        }
        z.finish().unwrap();
    };
    let p = path.to_str().unwrap().to_string();
    write(&[("x.npy", &plain), ("bad.npy", &nested)]);
    let start = std::time::Instant::now();
    let e = frostnet::io::npy::read_npz(&p).unwrap_err();
    assert!(start.elapsed().as_secs() < 2, "took {:?}", start.elapsed());
    assert_short(&e.to_string(), &p, &["bad.npy", "nests brackets"]);
    // Plain members still read, keyed without `.npy` as np.load keys them.
    write(&[("x.npy", &plain)]);
    let arrays = frostnet::io::npy::read_npz(&p).unwrap();
    let direct = read_npy(&fixture("cnn_input.npy")).unwrap();
    assert_eq!(arrays["x"].data(), direct.data());
    std::fs::remove_file(&path).ok();
}
