use std::process::ExitCode;

use clap::Parser;
use molt_daemon::logging::{self, LogHub};
use molt_daemon::paths::StatePaths;
use molt_daemon::start::{self, Options};
use tokio::signal::unix::{SignalKind, signal};

fn main() -> ExitCode {
    let options = Options::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("moltd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(options))
}

async fn run(options: Options) -> ExitCode {
    let process_env: std::collections::HashMap<String, String> = std::env::vars().collect();
    let hub = LogHub::default();
    // Logging first, so refusals below reach the log file too.
    let lookup = |key: &str| process_env.get(key).cloned();
    let _guard = StatePaths::resolve(options.state_dir.as_deref(), &lookup)
        .ok()
        .and_then(|paths| match logging::init(&paths.logs_dir, &hub) {
            Ok(guard) => Some(guard),
            Err(e) => {
                eprintln!("moltd: file logging disabled: {e}");
                None
            }
        });

    let prepared = match start::prepare(&options, process_env, hub).await {
        Ok(prepared) => prepared,
        Err(e) => {
            // stderr already carries tracing output when logging is up.
            if _guard.is_some() {
                tracing::error!("moltd: {e}");
            } else {
                eprintln!("moltd: {e}");
            }
            return ExitCode::from(e.exit_code() as u8);
        }
    };
    // Handlers go in before READY: a SIGTERM right after it must drain,
    // not kill.
    let stop = match stop_signal() {
        Ok(stop) => stop,
        Err(e) => {
            eprintln!("moltd: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("{}", prepared.ready_line());
    tracing::info!("{}", prepared.ready_line());
    prepared.serve(stop).await;
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

/// Installs the handlers now; the future completes on SIGTERM or SIGINT.
fn stop_signal() -> std::io::Result<impl Future<Output = ()>> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: stopping"),
            _ = int.recv() => tracing::info!("SIGINT: stopping"),
        }
    })
}
