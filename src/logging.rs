//! The process logger: one line per event on standard error, with a UTC timestamp, the level,
//! the shard (thread name) and the message; as text, or as one JSON object per line
//! (`POSTRUST_LOG_FORMAT=json`) for log collectors.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::LogFormat;

struct StderrLogger;

static LOGGER: StderrLogger = StderrLogger;

/// Lines are JSON objects; set once at start, read by every shard's logging.
static JSON: AtomicBool = AtomicBool::new(false);

/// Installs the logger; later calls only change the level and format.
pub fn init(level: log::LevelFilter, format: LogFormat) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
    JSON.store(format == LogFormat::Json, Ordering::Relaxed);
}

/// One line, ending in a newline.
fn line(ts: &str, level: log::Level, shard: &str, message: &str, json: bool) -> String {
    if !json {
        return format!("{ts} {level:<5} [{shard}] {message}\n");
    }
    let mut out = format!("{{\"ts\":\"{ts}\",\"level\":\"{level}\",\"shard\":");
    crate::graphql::json::quote(shard, &mut out);
    out.push_str(",\"msg\":");
    crate::graphql::json::quote(message, &mut out);
    out.push_str("}\n");
    out
}

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let thread = std::thread::current();
        let line = line(
            &utc_timestamp(SystemTime::now()),
            record.level(),
            thread.name().unwrap_or("main"),
            &record.args().to_string(),
            JSON.load(Ordering::Relaxed),
        );
        // One write call per line keeps lines from different shards whole.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// `2026-11-24T07:30:00.123Z`
fn utc_timestamp(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn lines_are_text_or_one_json_object() {
        let ts = "2026-11-24T09:25:45.678Z";
        assert_eq!(
            line(ts, log::Level::Warn, "shard-1", "a \"quoted\" thing", false),
            "2026-11-24T09:25:45.678Z WARN  [shard-1] a \"quoted\" thing\n"
        );
        let json = line(ts, log::Level::Warn, "shard-1", "a \"quoted\"\nthing", true);
        let parsed: serde_json::Value = serde_json::from_str(json.trim_end()).unwrap();
        assert_eq!(
            parsed,
            serde_json::json!({"ts": ts, "level": "WARN", "shard": "shard-1", "msg": "a \"quoted\"\nthing"})
        );
        assert!(json.ends_with("}\n") && json.matches('\n').count() == 1);
    }

    #[test]
    fn timestamps_are_utc_iso8601() {
        assert_eq!(utc_timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_795_512_345_678);
        assert_eq!(utc_timestamp(t), "2026-11-24T09:25:45.678Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(utc_timestamp(leap), "2000-02-29T00:00:00.000Z");
    }
}
