//! What the command line offers depends on the build: a gateway build
//! (`--no-default-features`) has no `sim`/`demo` and its `--help` says how to get them.
//! Run with `cargo test --no-default-features --test gateway_cli` for the gateway side.

use std::process::{Command, Output};

fn hallmonitor(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hallmonitor")).args(args).output().expect("run hallmonitor")
}

#[cfg(not(feature = "sim"))]
#[test]
fn the_gateway_build_has_no_sim_or_demo_and_says_how_to_get_them() {
    let help = String::from_utf8_lossy(&hallmonitor(&["--help"]).stdout).into_owned();
    assert!(help.contains("demo and sim: not in this gateway build; build with default features"), "{help}");
    // Commands are listed indented by two spaces.
    assert!(!help.lines().any(|l| l.starts_with("  sim ") || l.starts_with("  demo ")), "{help}");
    for command in ["sim", "demo"] {
        let out = hallmonitor(&[command]);
        assert_eq!(out.status.code(), Some(2), "`{command}` should be a usage error in a gateway build");
    }
}

#[cfg(feature = "embedded-broker")]
#[test]
fn the_default_build_lists_sim_and_demo() {
    let help = String::from_utf8_lossy(&hallmonitor(&["--help"]).stdout).into_owned();
    assert!(help.lines().any(|l| l.starts_with("  sim ")), "{help}");
    assert!(help.lines().any(|l| l.starts_with("  demo ")), "{help}");
    assert!(!help.contains("not in this"), "{help}");
}
