//! Builds every moltd version the end-to-end tests run, before the test
//! runner starts (`scripts/test`): tests only look their builds up.

fn main() -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    for package in molt_e2e::versions::build_suite()? {
        println!("{}", package.display());
    }
    eprintln!(
        "build-versions: {:?} ready in {:.0?}",
        molt_e2e::versions::SUITE,
        started.elapsed()
    );
    Ok(())
}
