//! The link step of the daemon: its steady-state functions first in its code, together
//! (`src/hot-text.ld`, written by `scripts/hot-text`, which says why). A linker script that
//! only `INSERT`s a section keeps the linker's default layout; lld and GNU ld both read it.
//! `HALLMONITOR_HOT_TEXT=0` leaves it out, for a linker that reads no linker script (mold).

fn main() {
    println!("cargo:rerun-if-changed=src/hot-text.ld");
    println!("cargo:rerun-if-env-changed=HALLMONITOR_HOT_TEXT");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux");
    let wanted = std::env::var("HALLMONITOR_HOT_TEXT").as_deref() != Ok("0");
    if linux && wanted {
        let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
        println!("cargo:rustc-link-arg-bin=hallmonitor=-Wl,-T,{dir}/src/hot-text.ld");
    }
}
