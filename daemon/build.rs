fn main() {
    // The version is compiled in; a release build stamps it with MOLT_VERSION.
    println!("cargo:rerun-if-env-changed=MOLT_VERSION");
}
