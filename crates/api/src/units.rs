//! Units as users write and read them: byte sizes (`128MiB`), durations
//! (`200ms`), and a byte count printed for people (`128 MiB`, `44.9 KiB`).

use std::fmt;
use std::time::Duration;

/// 1 KiB, for readable constants.
pub const KIB: u64 = 1024;
/// 1 MiB, for readable constants.
pub const MIB: u64 = 1024 * KIB;
/// 1 GiB, for readable constants.
pub const GIB: u64 = 1024 * MIB;

/// A size or duration that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {input:?} is not valid: {why}")]
pub struct ParseLimitError {
    what: &'static str,
    input: String,
    why: &'static str,
}

/// Parses a byte size: a whole number with an optional unit, `B`, `K`/`KB`/`KiB`,
/// `M`/`MB`/`MiB`, `G`/`GB`/`GiB` (all binary: 1 K = 1024 bytes), any case.
///
/// ```
/// assert_eq!(kiln_api::parse_size("64MiB"), Ok(64 << 20));
/// assert_eq!(kiln_api::parse_size("4096"), Ok(4096));
/// ```
pub fn parse_size(input: &str) -> Result<u64, ParseLimitError> {
    let err = |why| ParseLimitError {
        what: "size",
        input: input.to_owned(),
        why,
    };
    let s = input.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    if digits.is_empty() {
        return Err(err("expected a whole number of bytes, like 64MiB or 4096"));
    }
    let n: u64 = digits.parse().map_err(|_| err("number too large"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return Err(err("unknown unit (use B, KiB, MiB or GiB)")),
    };
    n.checked_mul(1 << shift).ok_or(err("number too large"))
}

/// Parses a duration: a number (decimals allowed) with a unit `ms`, `s`, `m` or `h`;
/// a bare number means seconds.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(kiln_api::parse_duration("200ms"), Ok(Duration::from_millis(200)));
/// assert_eq!(kiln_api::parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
/// ```
pub fn parse_duration(input: &str) -> Result<Duration, ParseLimitError> {
    let err = |why| ParseLimitError {
        what: "duration",
        input: input.to_owned(),
        why,
    };
    let s = input.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: f64 = number
        .parse()
        .map_err(|_| err("expected a number with a unit, like 200ms or 10s"))?;
    let seconds = match unit.trim() {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(err("unknown unit (use ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| err("out of range"))
}

/// A byte count for people: exact when it is a whole number of a unit, the way
/// users write limits (`128 MiB`, `512 bytes`), else to one decimal (`44.9 KiB`).
///
/// ```
/// use kiln_api::ByteCount;
/// assert_eq!(ByteCount(128 << 20).to_string(), "128 MiB");
/// assert_eq!(ByteCount(45_959).to_string(), "44.9 KiB");
/// assert_eq!(ByteCount(812).to_string(), "812 bytes");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteCount(pub u64);

impl fmt::Display for ByteCount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        // The largest unit the count reaches: whole when it is a multiple of it.
        for (shift, unit) in [(30, "GiB"), (20, "MiB"), (10, "KiB")] {
            if n >= 1 << shift {
                return match n.is_multiple_of(1 << shift) {
                    true => write!(f, "{} {unit}", n >> shift),
                    false => write!(f, "{:.1} {unit}", n as f64 / (1u64 << shift) as f64),
                };
            }
        }
        write!(f, "{n} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts_read_well() {
        assert_eq!(ByteCount(0).to_string(), "0 bytes");
        assert_eq!(ByteCount(1024).to_string(), "1 KiB");
        assert_eq!(ByteCount(16 * MIB).to_string(), "16 MiB");
        assert_eq!(ByteCount(3 * GIB).to_string(), "3 GiB");
        assert_eq!(ByteCount(20 * MIB + 300 * KIB).to_string(), "20.3 MiB");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("1k"), Ok(1024));
        assert_eq!(parse_size("128MiB"), Ok(128 * MIB));
        assert_eq!(parse_size("2 GB"), Ok(2 << 30));
        assert!(parse_size("").is_err());
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("99999999999999999999").is_err());
        let overflow = parse_size("18446744073709551615G").unwrap_err();
        assert!(overflow.to_string().contains("too large"), "{overflow}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5 fortnights").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
