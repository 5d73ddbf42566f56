use std::process::ExitCode;

use postrust::config::Config;
use postrust::triggers::{self, TableName};

const USAGE: &str = "\
usage:
  postrust                       serve GraphQL at POSTRUST_LISTEN (default 0.0.0.0:3000)
  postrust triggers sql [TABLE…]  print the change trigger function, and the statements
                                 that attach it to each TABLE (table or schema.table)
  postrust help                  this text

Settings come from POSTRUST_* environment variables; see tuning.md.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
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
        ["help" | "--help" | "-h"] => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn serve(config: Config) -> ExitCode {
    postrust::logging::init(config.log_level.0);
    log::info!("postrust {} starting", env!("CARGO_PKG_VERSION"));
    for (var, value) in config.effective() {
        log::info!("config {var}={value}");
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
