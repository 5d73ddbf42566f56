//! Captures what the code under test logs, so a test can assert on it.

use std::sync::Mutex;

static LINES: Mutex<Vec<(log::Level, String)>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        if let Ok(mut lines) = LINES.lock() {
            lines.push((record.level(), record.args().to_string()));
        }
    }
    fn flush(&self) {}
}

/// Installs the capturing logger for this test binary (once; later calls do nothing).
pub fn capture() {
    if log::set_logger(&Capture).is_ok() {
        log::set_max_level(log::LevelFilter::Debug);
    }
}

/// Lines logged so far that contain `needle`, with their level.
pub fn containing(needle: &str) -> Vec<(log::Level, String)> {
    LINES
        .lock()
        .map(|lines| {
            lines
                .iter()
                .filter(|(_, l)| l.contains(needle))
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}
