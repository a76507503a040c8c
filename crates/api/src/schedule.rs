//! Schedules: when a function runs without a request (`--schedule "*/5 * * * *"`).
//!
//! Standard cron syntax (minute, hour, day of month, month, day of week), in
//! UTC, with the `@yearly`, `@monthly`, `@weekly`, `@daily` and `@hourly`
//! aliases; an optional leading seconds field (six fields) is read too, for
//! operators whose minimum interval allows it. Parsing and the search for
//! ticks are [`croner`]'s. Times are whole seconds since the Unix epoch, as
//! everywhere in the contract.

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The request header (and CGI variable `HTTP_KILN_SCHEDULED_TIME`) that a
/// scheduled run carries: the tick it is for, in RFC 3339 (`2026-12-01T10:05:00Z`).
/// The server drops it from every client's request, so a guest can trust it.
pub const SCHEDULED_TIME_HEADER: &str = "kiln-scheduled-time";

/// Ticks looked at to find a schedule's shortest interval.
const INTERVAL_SAMPLE: usize = 2000;

/// A parsed cron schedule. Serialized as the text it was given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Schedule {
    text: String,
    cron: Cron,
}

/// A schedule that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid schedule {text:?}: {why} (use five cron fields, e.g. \"*/5 * * * *\", or @hourly, @daily, @weekly, @monthly, @yearly)"
)]
pub struct BadSchedule {
    /// The schedule as given.
    pub text: String,
    /// What is wrong with it.
    pub why: String,
}

impl Schedule {
    /// Parses a cron expression or alias.
    ///
    /// ```
    /// let s = kiln_api::Schedule::parse("*/5 * * * *").unwrap();
    /// // 2026-12-01T10:02:00Z → the next tick is 10:05.
    /// assert_eq!(s.next_after(1_796_119_320), Some(1_796_119_500));
    /// assert!(kiln_api::Schedule::parse("61 * * * *").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<Schedule, BadSchedule> {
        let bad = |why: String| BadSchedule {
            text: text.to_owned(),
            why,
        };
        let trimmed = text.trim();
        if trimmed.len() > 200 {
            return Err(bad("longer than 200 characters".into()));
        }
        let parser = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build();
        let cron = parser.parse(trimmed).map_err(|e| bad(e.to_string()))?;
        let schedule = Schedule {
            text: trimmed.to_owned(),
            cron,
        };
        // A pattern that never matches (30 February) is not a schedule.
        if schedule.next_after(0).is_none() {
            return Err(bad("it never matches a time".into()));
        }
        Ok(schedule)
    }

    /// The schedule as given (trimmed).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The first tick strictly after `time`.
    pub fn next_after(&self, time: i64) -> Option<i64> {
        let from = chrono::DateTime::from_timestamp(time, 0)?;
        let next = self.cron.find_next_occurrence(&from, false).ok()?;
        Some(next.timestamp())
    }

    /// The latest tick in `(after, now]`: what is due now. Ticks missed before
    /// it (the node or the cluster was down) are not returned: a schedule
    /// catches up with one run, not one per missed tick.
    pub fn latest_due(&self, after: i64, now: i64) -> Option<i64> {
        let at = chrono::DateTime::from_timestamp(now, 0)?;
        let tick = self
            .cron
            .find_previous_occurrence(&at, true)
            .ok()?
            .timestamp();
        (tick > after).then_some(tick)
    }

    /// The shortest time between two consecutive ticks after `from`, among the
    /// next few thousand (enough to cover every field's period): what the
    /// operator's minimum interval is checked against.
    pub fn shortest_interval(&self, from: i64) -> Duration {
        let mut shortest = u64::MAX;
        let mut previous = match self.next_after(from) {
            Some(tick) => tick,
            None => return Duration::MAX,
        };
        for _ in 0..INTERVAL_SAMPLE {
            let Some(tick) = self.next_after(previous) else {
                break;
            };
            shortest = shortest.min(tick.abs_diff(previous));
            previous = tick;
        }
        Duration::from_secs(shortest)
    }
}

impl TryFrom<String> for Schedule {
    type Error = BadSchedule;
    fn try_from(text: String) -> Result<Self, Self::Error> {
        Schedule::parse(&text)
    }
}

impl From<Schedule> for String {
    fn from(schedule: Schedule) -> String {
        schedule.text
    }
}

impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// A time as RFC 3339 in UTC (`2026-12-01T10:05:00Z`), as a scheduled run's
/// header carries it.
pub fn rfc3339(time: i64) -> String {
    chrono::DateTime::from_timestamp(time, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// One of `GET /v1/schedules`: a function whose current version has a schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleInfo {
    /// The function's name.
    pub function: String,
    /// Its schedule.
    pub schedule: String,
    /// The version the schedule belongs to (the current one).
    pub version: u32,
    /// The next tick, seconds since the Unix epoch.
    pub next_at: Option<i64>,
    /// The latest run, if any.
    pub last: Option<ScheduledRun>,
}

/// A scheduled run: claimed once across the cluster by one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduledRun {
    /// The tick it ran for.
    pub tick: i64,
    /// The version that ran.
    pub version: u32,
    /// The node that claimed it.
    pub node: String,
    /// When it started.
    pub started_at: i64,
    /// When it ended; `None` while it runs.
    pub finished_at: Option<i64>,
    /// How it ended: a `Kiln-Outcome` kind, or `node-lost` when the node
    /// running it stopped before it ended (the tick is not run again).
    pub outcome: Option<String>,
    /// The HTTP status it answered, when it ended on its node.
    pub status: Option<u16>,
}

/// The outcome of a run whose node stopped while it ran.
pub const NODE_LOST: &str = "node-lost";

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_796_119_320; // 2026-12-01T10:02:00Z

    #[test]
    fn aliases_and_fields_give_the_ticks_of_cron() {
        let hourly = Schedule::parse("@hourly").expect("alias");
        assert_eq!(hourly.next_after(T), Some(1_796_122_800)); // 11:00
        let five = Schedule::parse(" */5 * * * * ").expect("fields");
        assert_eq!(five.as_str(), "*/5 * * * *");
        assert_eq!(five.latest_due(0, T), Some(1_796_119_200)); // 10:00
        assert_eq!(five.latest_due(1_796_119_200, T), None);
        // Hours of downtime: one tick is due, the latest.
        assert_eq!(five.latest_due(T - 36_000, T), Some(1_796_119_200));
        assert_eq!(five.shortest_interval(T), Duration::from_secs(300));
        let seconds = Schedule::parse("*/2 * * * * *").expect("six fields");
        assert_eq!(seconds.shortest_interval(T), Duration::from_secs(2));
        assert_eq!(
            Schedule::parse("0 9 * * MON-FRI")
                .expect("weekdays")
                .shortest_interval(T),
            Duration::from_secs(24 * 3600)
        );
        assert_eq!(rfc3339(T), "2026-12-01T10:02:00Z");
    }

    #[test]
    fn bad_schedules_are_named() {
        for text in [
            "",
            "* * *",
            "61 * * * *",
            "@sometimes",
            "0 0 30 2 *",
            "* * * * * * 2030",
        ] {
            let err = Schedule::parse(text).expect_err(text).to_string();
            assert!(err.starts_with("invalid schedule"), "{text}: {err}");
        }
        let json = serde_json::to_string(&Schedule::parse("@daily").expect("daily")).expect("json");
        assert_eq!(json, "\"@daily\"");
        assert!(serde_json::from_str::<Schedule>("\"nope\"").is_err());
    }
}
