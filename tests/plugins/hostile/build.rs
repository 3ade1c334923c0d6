//! Ties this crate's compiled artifacts to the checkout that builds them.
//! Checkouts share one cargo build dir (see the Makefile), and cargo names a
//! workspace member's artifacts by its path relative to the workspace, so
//! without this a checkout whose sources are older than another checkout's
//! last build would take that build as fresh: the wrong plugin, silently.
fn main() {
    println!("cargo:rerun-if-env-changed=LLMA_CHECKOUT_DIR");
}
