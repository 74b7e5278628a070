//! Build script: rebuild the engine when a migration file is added or changed (they are embedded).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
