use std::process::ExitCode;

use postrust::config::Config;
use postrust::triggers::{self, TableName};

const USAGE: &str = "\
usage:
  postrust                       serve GraphQL at POSTRUST_LISTEN (default 0.0.0.0:3000)
  postrust triggers sql [TABLE…]  print the change trigger function, and the statements
                                 that attach it to each TABLE (table or schema.table)
  postrust triggers install [TABLE…]
                                 install the function in POSTRUST_DATABASE_URL and attach
                                 it to each TABLE (default: every table of the schemas in
                                 POSTRUST_DB_SCHEMAS), notifying on POSTRUST_NOTIFY_CHANNEL;
                                 a trigger there that notifies on the same channel (the
                                 docs page's) is replaced
  postrust --version             the version
  postrust help                  this text

Settings come from POSTRUST_* environment variables; see tuning.md.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // Answered whatever the environment holds.
    match args.as_slice() {
        ["--version" | "-V" | "version"] => {
            println!("postrust {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        ["help" | "--help" | "-h"] => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("postrust: {err}");
            return ExitCode::from(2);
        }
    };
    match args.as_slice() {
        [] | ["serve"] => serve(config),
        ["triggers", "sql", tables @ ..] => print_trigger_sql(&config, tables),
        ["triggers", "install", tables @ ..] => install_triggers(&config, tables),
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn serve(config: Config) -> ExitCode {
    postrust::logging::init(config.log_level.0, config.log_format);
    log::info!("postrust {} starting", env!("CARGO_PKG_VERSION"));
    for (var, value) in config.effective() {
        log::info!("config {var}={value}");
    }
    let names = std::env::vars_os().filter_map(|(name, _)| name.into_string().ok());
    for warning in postrust::config::unknown_variables(names) {
        log::warn!("{warning}");
    }
    match postrust::shard::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            log::error!("{err}");
            ExitCode::FAILURE
        }
    }
}

fn print_trigger_sql(config: &Config, tables: &[&str]) -> ExitCode {
    let mut out = String::from(triggers::function_sql());
    for table in tables {
        match TableName::parse(table) {
            Ok(name) => {
                out.push('\n');
                out.push_str(&triggers::attach_sql(&name, &config.notify_channel));
            }
            Err(err) => {
                eprintln!("postrust: {err}");
                return ExitCode::from(2);
            }
        }
    }
    print!("{out}");
    ExitCode::SUCCESS
}

fn install_triggers(config: &Config, tables: &[&str]) -> ExitCode {
    let mut names = Vec::with_capacity(tables.len());
    for table in tables {
        match TableName::parse(table) {
            Ok(name) => names.push(name),
            Err(err) => {
                eprintln!("postrust: {err}");
                return ExitCode::from(2);
            }
        }
    }
    let channel = &config.notify_channel;
    let report = |installed: &triggers::Installed| {
        let table = &installed.table;
        print!("installed postrust.notify_change() on {table}, notifying on channel {channel:?}");
        for (name, function) in &installed.replaced {
            print!("; replaced trigger {name} ({function}()), which notified on the same channel");
        }
        println!();
    };
    match triggers::install_now(config, names, report) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("postrust: triggers install failed, nothing was changed: {err}");
            ExitCode::FAILURE
        }
    }
}
