//! Records the console's fixtures of moltd from a real one into
//! `tui/tests/fixtures/moltd/` (see `molt_e2e::console_fixtures`). Needs
//! the builds of `build-versions`.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let recording = molt_e2e::console_fixtures::record().await?;
    let dir = molt_e2e::console_fixtures::dir();
    molt_e2e::console_fixtures::write(&recording, &dir)?;
    eprintln!(
        "record-console-fixtures: {} files in {}",
        recording.len(),
        dir.display()
    );
    Ok(())
}
