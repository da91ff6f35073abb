//! Builds the workload guest (validator/guest/: ring-0 entry in assembly, the
//! ring-3 workload in freestanding C) into a flat binary the VMM loads at
//! GUEST_IMAGE_GPA. The same steps are in guest/build-guest.sh for building
//! it by hand. Needs gcc and objcopy (binutils), which a Rust toolchain on
//! Debian already brings for linking.
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let guest = PathBuf::from("guest");
    for f in ["abi.h", "entry.S", "workload.c", "guest.ld", "build-guest.sh"] {
        println!("cargo:rerun-if-changed=guest/{f}");
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let bin = out.join("guest.bin");
    let target_arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_arch != "x86_64" || target_os != "linux" {
        // The VMM only exists on x86_64 Linux; elsewhere the crate builds
        // without a guest and the commands say so.
        std::fs::write(&bin, []).expect("write empty guest");
        return;
    }
    let status = Command::new("bash")
        .arg(guest.join("build-guest.sh"))
        .env("OUT", &out)
        .status()
        .unwrap_or_else(|e| panic!("cannot run validator/guest/build-guest.sh: {e}"));
    if !status.success() {
        panic!(
            "building the workload guest failed (validator/guest/build-guest.sh): it needs gcc and \
             objcopy; on Debian: apt-get install gcc binutils"
        );
    }
}
