use std::process::ExitCode;

use postrust::config::Config;

fn main() -> ExitCode {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("postrust: {err}");
            return ExitCode::from(2);
        }
    };
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
