//! Build script of guest-common: puts `link.ld` on the linker search path of every guest binary.

use std::{env, fs, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    fs::copy("link.ld", out.join("link.ld")).expect("copy link.ld to OUT_DIR");
    // Cargo passes a dependency's search paths on to the final link, and GNU ld looks for a `-T`
    // script in the `-L` directories that precede it.
    println!("cargo:rustc-link-search=native={}", out.display());
    println!("cargo:rerun-if-changed=link.ld");
}
