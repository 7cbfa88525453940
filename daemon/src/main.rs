use std::collections::HashMap;
use std::process::ExitCode;

use clap::Parser;
use molt_daemon::logging::{self, LogHub};
use molt_daemon::paths::StatePaths;
use molt_daemon::restart::{engine, exec, inherit::Inherited};
use molt_daemon::start::{self, Command, EXIT_CONFIG, Launch, Options};
use tokio::signal::unix::{SignalKind, signal};

fn main() -> ExitCode {
    let options = Options::parse();
    let process_env: HashMap<String, String> = std::env::vars().collect();
    let lookup = |key: &str| process_env.get(key).cloned();
    let paths = match StatePaths::resolve(options.state_dir.as_deref(), &lookup) {
        Ok(paths) => paths,
        Err(e) => {
            eprintln!("moltd: {e}");
            return ExitCode::from(EXIT_CONFIG as u8);
        }
    };
    if options.command == Some(Command::Rescue) {
        return rescue(&paths, &lookup);
    }
    // Before any thread exists: taking LISTEN_FDS edits the environment.
    let inherited = match Inherited::take(&process_env, &paths.lock_path) {
        Ok(inherited) => inherited,
        Err(e) => {
            eprintln!("moltd: {e}");
            return ExitCode::from(EXIT_CONFIG as u8);
        }
    };
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
    runtime.block_on(run(options, paths, process_env, inherited))
}

async fn run(
    options: Options,
    paths: StatePaths,
    process_env: HashMap<String, String>,
    inherited: Inherited,
) -> ExitCode {
    let logs = LogHub::default();
    let log_options = log_options(&options, &paths);
    // Logging first, so refusals below reach the log file too.
    let guard = match logging::init(&paths.logs_dir, &logs, log_options) {
        Ok(guard) => Some(guard),
        Err(e) => {
            logging::init_without_file(&logs, log_options.format);
            tracing::warn!("file logging disabled: {}: {e}", paths.logs_dir.display());
            None
        }
    };
    let successor = engine::successor_spec(molt_daemon::install::stable_entrypoint());
    // A socket systemd activated us for: if we refuse to start, the
    // connections queued on it are answered, or each would make systemd
    // start us again at once, only to be refused again.
    let activated = inherited
        .predecessor
        .is_none()
        .then(|| inherited.listener.as_ref()?.try_clone().ok())
        .flatten();
    let launch = Launch {
        process_env,
        logs,
        inherited,
        successor: successor.clone(),
    };
    let mut prepared = match start::prepare(&options, launch).await {
        Ok(prepared) => prepared,
        Err(e) => {
            // Logged once: the subscriber writes stderr and the file.
            tracing::error!("{e}");
            if let Some(listener) = activated {
                start::refuse_queued(&listener);
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
    // The predecessor hears first and judges this process; READY on
    // stdout then means the handoff is done. Not accepted, it goes before
    // it claims or starts anything.
    if let Err(e) = prepared.announce_ready().await {
        tracing::error!("{e}");
        return ExitCode::from(e.exit_code() as u8);
    }
    // A successor inherits its predecessor's stdout, which may be closed
    // (`moltd | head -1`): READY there is a courtesy, never a reason to die.
    {
        use std::io::Write;
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{}", prepared.ready_line()).and_then(|()| stdout.flush());
    }
    tracing::info!("{}", prepared.ready_line());
    let gateway = prepared.gateway().clone();
    // After READY: the predecessor has let go, so what runs now is final.
    gateway.resume_updates().await;
    molt_daemon::gateway::auto::spawn_with_update_engine(&gateway);
    prepared.serve(stop).await;

    let reason = gateway.stop_reason();
    if reason.exec_after
        && let Some(spec) = successor
    {
        match gateway.handoff_fds() {
            Ok(held) => {
                // The same pid goes on in the new image, with these counts.
                gateway.hand_over(molt_daemon::metrics::handoff::Heir::Pid(std::process::id()));
                tracing::info!(entrypoint = %spec.entrypoint.display(), "exec'ing the new binary");
                drop(guard);
                let supervisor = gateway.supervisor_info().kind;
                let error = exec::exec_successor(&spec, held, supervisor);
                eprintln!("moltd: exec {} failed: {error}", spec.entrypoint.display());
            }
            Err(e) => eprintln!("moltd: cannot keep the listener across exec: {e}"),
        }
        return ExitCode::FAILURE;
    }
    if reason.next_start_after {
        // Drained: every request is counted; the supervisor's next start
        // takes the counts on.
        gateway.hand_over(molt_daemon::metrics::handoff::Heir::NextStart);
    }
    tracing::info!(reason = %reason.reason, "stopped");
    ExitCode::SUCCESS
}

/// The config's `logging.*` (defaults if it does not load: the start
/// refuses it with a clear message right after), under the flags.
fn log_options(options: &Options, paths: &StatePaths) -> logging::LogOptions {
    let mut log = molt_daemon::config::ConfigFile::load(&paths.config_path)
        .and_then(|file| file.settings())
        .map(|settings| settings.logging)
        .unwrap_or_default();
    if let Some(format) = options.log_format {
        log.format = format;
    }
    log
}

/// `moltd rescue`: judge the service's exit, roll back a crash loop.
fn rescue(paths: &StatePaths, env: &dyn Fn(&str) -> Option<String>) -> ExitCode {
    use molt_daemon::update::rescue::{self, Outcome, ServiceExit};
    let logs = LogHub::default();
    let _guard = logging::init(&paths.logs_dir, &logs, logging::LogOptions::default())
        .inspect_err(|_| logging::init_without_file(&logs, logging::LogFormat::Text))
        .ok();
    let Some(exit) = ServiceExit::from_env(env) else {
        match rescue::read_record(paths) {
            Ok(Some(record)) => println!(
                "armed: run {} from {} to {}; {} failure(s) recorded",
                record.run_id,
                record.previous_version,
                record.new_version,
                record.failures.len()
            ),
            Ok(None) => println!("not armed: no update to roll back"),
            Err(e) => {
                eprintln!("moltd rescue: {e}");
                return ExitCode::FAILURE;
            }
        }
        return ExitCode::SUCCESS;
    };
    let now = molt_daemon::clock::unix_ms();
    match rescue::run(paths, &exit, now) {
        Ok(Outcome::NotArmed) => ExitCode::SUCCESS,
        Ok(Outcome::Judged(verdict)) => {
            tracing::info!(?verdict, result = %exit.result, "rescue: the service stopped");
            ExitCode::SUCCESS
        }
        Ok(Outcome::RolledBack { from, to }) => {
            tracing::error!(%from, %to, "rescue: {from} crash-looped; rolled back to {to}");
            ExitCode::SUCCESS
        }
        Ok(Outcome::RollbackFailed(reason)) => {
            tracing::error!("rescue: {reason}");
            ExitCode::FAILURE
        }
        Err(e) => {
            tracing::error!("rescue: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Installs the handlers now; the future completes on SIGTERM or SIGINT.
/// A second signal during the drain ends the process at once (128 + the
/// signal's number, as a shell reports a death by signal), taking a
/// successor that is starting along.
fn stop_signal() -> std::io::Result<impl Future<Output = ()>> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: stopping"),
            _ = int.recv() => tracing::info!("SIGINT: stopping"),
        }
        tokio::spawn(async move {
            let (name, code) = tokio::select! {
                _ = term.recv() => ("SIGTERM", 143),
                _ = int.recv() => ("SIGINT", 130),
            };
            eprintln!("moltd: second {name} while stopping: exiting now");
            molt_daemon::restart::respawn::kill_starting();
            std::process::exit(code);
        });
    })
}
