//! Builds the test guest (resources/test-guest) so the `vmm` binary can embed it: `vmm run`
//! with no --kernel boots it, on a fresh machine, with nothing to download.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    );
    let guest_dir = manifest.join("../resources/test-guest");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("test-guest.elf");
    println!("cargo:rerun-if-changed={}", guest_dir.display());
    // The guest is built with the same rustc as the VMM.
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let status = Command::new("bash")
        .arg(guest_dir.join("build.sh"))
        .arg(&out)
        .env("RUSTC", rustc)
        .status()
        .expect("cannot run bash to build the test guest");
    assert!(
        status.success(),
        "building the test guest failed ({status})"
    );
}
