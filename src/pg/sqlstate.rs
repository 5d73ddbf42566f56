//! The SQLSTATE codes and classes the server decides on, by name (PostgreSQL's
//! `errcodes.txt`). A class is the code's first two characters.

/// `42501`: the role lacks a privilege, or row-level security refused a row.
pub const INSUFFICIENT_PRIVILEGE: &str = "42501";
/// Class `23`, integrity constraint violations, and the codes of it told apart.
pub const CLASS_INTEGRITY: &str = "23";
pub const UNIQUE_VIOLATION: &str = "23505";
pub const FOREIGN_KEY_VIOLATION: &str = "23503";
pub const NOT_NULL_VIOLATION: &str = "23502";
pub const CHECK_VIOLATION: &str = "23514";

/// Codes of class `22` (data exception) that say a value cannot be read as its type: the
/// client sent it. Others of the class come from the SQL (division by zero) or from the
/// server's settings (`22023`: the role a token names does not exist).
pub fn is_bad_value(code: &str) -> bool {
    matches!(
        code,
        // string too long, null not allowed, numeric out of range, bad datetime format,
        // datetime out of range, bad encoding, bad text for the type, untranslatable
        // character, a regular expression that does not compile
        "22001" | "22004" | "22003" | "22007" | "22008" | "22021" | "22P02" | "22P05" | "2201B"
    )
}

/// `21000`: a scalar subquery returned more than one row.
pub const CARDINALITY_VIOLATION: &str = "21000";
/// `57014`: the statement was cancelled: by `statement_timeout`, or by a CancelRequest
/// (`pg_cancel_backend`).
pub const QUERY_CANCELED: &str = "57014";
/// `57P01`, `57P02`, `57P03`: the server is shutting down, crashed, or is starting.
pub const ADMIN_SHUTDOWN: &str = "57P01";
pub const CRASH_SHUTDOWN: &str = "57P02";
pub const CANNOT_CONNECT_NOW: &str = "57P03";
/// `53300`: `max_connections` reached.
pub const TOO_MANY_CONNECTIONS: &str = "53300";
/// `53400`: a configured limit (`temp_file_limit`) that the statement itself exceeds.
pub const CONFIGURATION_LIMIT_EXCEEDED: &str = "53400";

/// Class `08`: connection exceptions.
pub const CLASS_CONNECTION: &str = "08";
/// Class `40`: transaction rollback (serialization failure, deadlock).
pub const CLASS_TRANSACTION_ROLLBACK: &str = "40";
/// Class `53`: insufficient resources (disk full, out of memory, too many connections).
pub const CLASS_INSUFFICIENT_RESOURCES: &str = "53";
/// Class `55`: object not in prerequisite state (a lock not available, an object in use).
pub const CLASS_OBJECT_STATE: &str = "55";
/// Class `57`: operator intervention (shutdowns; cancels are decided on their own).
pub const CLASS_OPERATOR_INTERVENTION: &str = "57";
/// Class `58`: system errors outside PostgreSQL (I/O errors).
pub const CLASS_SYSTEM: &str = "58";

/// The code's class: its first two characters.
pub fn class(code: &str) -> &str {
    code.get(..2).unwrap_or(code)
}

/// Codes that say the server cannot do it now but may later: the client's statement was
/// fine and trying again after a pause is right. Not a cancel, and not a limit the
/// statement exceeds by itself, which it would exceed again.
pub fn is_transient(code: &str) -> bool {
    code != QUERY_CANCELED
        && code != CONFIGURATION_LIMIT_EXCEEDED
        && matches!(
            class(code),
            CLASS_CONNECTION
                | CLASS_TRANSACTION_ROLLBACK
                | CLASS_INSUFFICIENT_RESOURCES
                | CLASS_OBJECT_STATE
                | CLASS_OPERATOR_INTERVENTION
                | CLASS_SYSTEM
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_classes_and_the_cancel_exception() {
        for code in [
            "08006", "40001", "40P01", "53100", "53200", "53300", "55P03", "57P01", "58030",
        ] {
            assert!(is_transient(code), "{code}");
        }
        for code in [
            QUERY_CANCELED,
            INSUFFICIENT_PRIVILEGE,
            "42P01",
            "22P02",
            "23505",
            "54001",
            "XX000",
            "0A000",
        ] {
            assert!(!is_transient(code), "{code}");
        }
        assert_eq!(class("4"), "4");
    }
}
