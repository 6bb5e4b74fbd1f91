//! `sandboxd`: the daemon binary. Helper mode is detected here, before any
//! runtime or thread exists, because the supervisor must be single-threaded.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use sandboxd::config::{Args, Config, LogFormat};

fn main() -> ExitCode {
    // `sandboxd __supervise <id>`: the per-sandbox supervisor helper. It is
    // this same binary re-executed by the daemon; argv[2] (the id) is only
    // there so `ps` shows which sandbox a helper serves.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == sandboxd::SUPERVISE_ARG)
    {
        sandboxd::rlimit::restore_in_helper();
        let code = sandboxd::backend::supervisor_main();
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    // `sandboxd __zygote`: the long-lived helper that forks supervisors
    // (sandboxd_supervisor::zygote), started by the daemon with the
    // helpers' environment; single-threaded like them.
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == sandboxd_supervisor::zygote::ZYGOTE_ARG)
    {
        sandboxd::rlimit::restore_in_helper();
        let code = sandboxd_supervisor::zygote::zygote_main(sandboxd::backend::supervisor_main);
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sandboxd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let check = args.check_config;
    let config = Config::load(args)?;
    if check {
        println!("configuration OK: {config:#?}");
        return Ok(());
    }
    init_logging(config.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sandboxd")
        .build()
        .context("building the tokio runtime")?;
    runtime.block_on(sandboxd::server::serve(config))
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SANDBOXD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colours only on a terminal: logs in files and journals stay
        // greppable.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
