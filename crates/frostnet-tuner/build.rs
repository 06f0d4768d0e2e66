//! Decides whether the PostgreSQL tests run (issue #13, point 9): a test that
//! cannot run must say so (`ignored`), never pass without testing anything.
//!
//! `cfg(frostnet_pg_tests)` is set when `FROSTNET_PG_URL` names a server, or
//! when `CI=true`: in CI the tests then run and fail if no server was
//! started. Elsewhere, without a URL, they are `#[ignore]`d with the reason.
//! Cargo re-runs this script (and rebuilds the tests) when either variable
//! changes.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=FROSTNET_PG_URL");
    println!("cargo::rerun-if-env-changed=CI");
    println!("cargo::rustc-check-cfg=cfg(frostnet_pg_tests)");
    let url = std::env::var("FROSTNET_PG_URL").is_ok_and(|u| !u.is_empty());
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    if url || ci {
        println!("cargo::rustc-cfg=frostnet_pg_tests");
    }
}
