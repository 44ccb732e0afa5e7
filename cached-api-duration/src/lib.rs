//! The one duration grammar of [`cached-api`](https://docs.rs/cached-api):
//! whole seconds (`"90"`) or a whole number and one unit (`"30s"`, `"15m"`,
//! `"24h"`, `"7d"`), positive and at most 100 years.
//!
//! The `#[cached_api]` attribute checks `ttl = "15m"` with it at compile time
//! and the runtime reads `CACHED_API_DEFAULT_TTL` with it, so the two accept
//! exactly the same text and explain a mistake the same way. It is a crate of
//! its own because the proc macro cannot depend on the runtime (that would
//! build Redis and tokio for the compiler's host), and a source file shared
//! by path would be left out when the crates are packaged.
//!
//! ```
//! use std::time::Duration;
//!
//! assert_eq!(cached_api_duration::parse("15m"), Ok(Duration::from_secs(900)));
//! let error = cached_api_duration::parse("15 min").unwrap_err();
//! assert!(error.to_string().ends_with("did you mean \"15m\"?"));
//! ```

use std::fmt;
use std::time::Duration;

/// The longest duration accepted: 100 years. Longer than any cache entry
/// should live, and short enough for Redis' millisecond expiry.
pub const MAX: Duration = Duration::from_secs(MAX_SECS);

const MAX_SECS: u64 = 100 * 365 * 86_400;

/// Why a text is not a duration, in words meant for the person who wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationError {
    message: String,
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DurationError {}

fn error(message: String) -> DurationError {
    DurationError { message }
}

/// Parses whole seconds (`"90"`) or a whole number and one unit: `s`, `m`,
/// `h` or `d`. Zero and anything over [`MAX`] are errors; a common spelling
/// of a unit (`"15 min"`, `"2 hours"`) gets a "did you mean" hint.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(split);
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => {
            let hint = match (digits.is_empty(), canonical_unit(unit.trim())) {
                (false, Some(unit)) => format!("; did you mean \"{digits}{unit}\"?"),
                _ => String::new(),
            };
            return Err(error(format!(
                "{text:?} is not a duration: write seconds (`90`) or a number and one unit: \"30s\", \"15m\", \"24h\", \"7d\"{hint}"
            )));
        }
    };
    if digits.is_empty() {
        return Err(error(format!(
            "{text:?} is not a duration: it must start with a whole number, as in \"15m\""
        )));
    }
    // All digits: parsing fails only by overflow, which is "too long" too.
    let secs = digits
        .parse::<u64>()
        .ok()
        .and_then(|count| count.checked_mul(scale));
    match secs {
        Some(0) => Err(error(format!(
            "{text:?} would cache nothing: a duration must be positive"
        ))),
        Some(secs) if secs <= MAX_SECS => Ok(Duration::from_secs(secs)),
        _ => Err(error(format!("{text:?} is too long: at most 100 years"))),
    }
}

/// The unit meant by a common spelling, for the hint.
fn canonical_unit(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "s" | "sec" | "secs" | "second" | "seconds" => "s",
        "m" | "min" | "mins" | "minute" | "minutes" => "m",
        "h" | "hr" | "hrs" | "hour" | "hours" => "h",
        "d" | "day" | "days" => "d",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn accepted_forms() {
        assert_eq!(parse("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse(" 30s "), Ok(Duration::from_secs(30)));
        assert_eq!(parse("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse("7d"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse("36500d"), Ok(MAX));
    }

    #[test]
    fn mistakes_are_explained() {
        assert!(message("0").contains("must be positive"));
        assert!(message("0m").contains("must be positive"));
        assert!(message("15 min").ends_with("did you mean \"15m\"?"));
        assert!(message("2 hours").ends_with("did you mean \"2h\"?"));
        assert!(!message("15 fortnights").contains("did you mean"));
        assert!(message("m").contains("whole number"));
        assert!(message("").contains("whole number"));
        assert!(message("-5").contains("not a duration"));
        assert!(message("1.5h").contains("not a duration"));
        assert!(message("36501d").contains("too long"));
        assert!(message("99999999999999999999").contains("too long"));
        assert!(message("999999999999999999d").contains("too long"));
    }
}
