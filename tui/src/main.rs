//! `molt`: parse arguments, set up file logging, run the console or a
//! subcommand, map the outcome to a documented exit code.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use molt_console::cli::{self, Cli, CliCommand, CliError, ConfigAction, Exit};
use molt_console::target::{self, Env, Overrides};
use molt_console::{logging, runtime};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // 0 for --help/--version, 2 for usage errors.
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(Exit::Usage as u8));
        }
    };
    let overrides = cli.overrides();
    let env = Env::from_process();
    let state_dir = target::state_dir(&overrides, &env).ok();
    let _log = logging::init(state_dir.as_deref());

    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("molt: cannot start the async runtime: {e}");
            return Exit::Other.into();
        }
    };

    let fleet_screen = match &cli.command {
        None => cli.fleet.is_some(),
        Some(CliCommand::Fleet { action }) => action.is_none(),
        Some(_) => false,
    };
    if fleet_screen {
        if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
            eprintln!(
                "molt: the Fleet screen needs a terminal; for scripts use `molt fleet status --json`"
            );
            return Exit::Usage.into();
        }
        let fleet = match cli::load_fleet(cli.fleet.as_deref()) {
            Ok(fleet) => fleet,
            Err(e) => {
                eprintln!("molt: {e}");
                return e.exit().into();
            }
        };
        return match runtime.block_on(molt_console::fleet::screen::run(fleet)) {
            Ok(()) => Exit::Ok.into(),
            Err(e) => {
                tracing::error!(error = %e, "fleet console failed");
                eprintln!("molt: {e}");
                Exit::Other.into()
            }
        };
    }
    let fleet_path = cli.fleet.clone();
    match cli.command {
        None => {
            if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
                eprintln!(
                    "molt: the console needs a terminal; for scripts use `molt status --json`"
                );
                return Exit::Usage.into();
            }
            match runtime.block_on(runtime::run_console(overrides, env)) {
                Ok(()) => Exit::Ok.into(),
                Err(e) => {
                    tracing::error!(error = %e, "console failed");
                    eprintln!("molt: {e}");
                    Exit::Other.into()
                }
            }
        }
        Some(command) => {
            let mut stdout = std::io::stdout().lock();
            match runtime.block_on(subcommand(
                &overrides,
                fleet_path.as_deref(),
                command,
                &mut stdout,
            )) {
                Ok(()) => Exit::Ok.into(),
                Err(e) => {
                    tracing::warn!(error = %e, "subcommand failed");
                    eprintln!("molt: {e}");
                    e.exit().into()
                }
            }
        }
    }
}

async fn subcommand(
    overrides: &Overrides,
    fleet: Option<&std::path::Path>,
    command: CliCommand,
    out: &mut impl std::io::Write,
) -> Result<(), CliError> {
    match command {
        CliCommand::Status { json } => cli::status(overrides, json, out).await,
        CliCommand::Update {
            tag,
            note,
            yes,
            json,
        } => {
            let args = cli::UpdateArgs {
                tag: tag.as_deref(),
                note: note.as_deref(),
                yes,
                json,
                resolved: false,
            };
            cli::update(overrides, args, out).await
        }
        CliCommand::Config { action } => match action {
            ConfigAction::Get { key, json } => {
                cli::config_get(overrides, key.as_deref(), json, out).await
            }
            ConfigAction::Set { key, value, json } => {
                cli::config_set(overrides, &key, &value, json, out).await
            }
        },
        CliCommand::Restart {
            reason,
            delay_ms,
            force,
            no_wait,
            json,
        } => {
            let args = cli::RestartArgs {
                reason: &reason,
                delay_ms,
                force,
                wait: !no_wait,
                json,
            };
            cli::restart(overrides, args, out).await
        }
        CliCommand::Fleet {
            action: Some(action),
        } => cli::fleet_command(fleet, action, out).await,
        CliCommand::Fleet { action: None } => Err(CliError::Usage(
            "the Fleet screen is not a subcommand".to_owned(),
        )),
        CliCommand::Logs {
            follow,
            lines,
            since,
            level,
            grep,
            json,
        } => {
            let args = cli::LogsArgs {
                follow,
                lines,
                since: since.as_deref(),
                level,
                grep: grep.as_deref(),
                json,
            };
            cli::logs(overrides, args, out).await
        }
        CliCommand::Audit {
            limit,
            action,
            actor,
            before,
            json,
        } => {
            let args = cli::AuditArgs {
                limit,
                action,
                actor,
                before,
                json,
            };
            cli::audit(overrides, &args, out).await
        }
    }
}
