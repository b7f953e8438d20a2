//! Value parsers shared by every subcommand, so a duration means the same thing on every flag.
//!
//! One syntax everywhere (issue 18 §7): a duration is humantime's (`500ms`, `10s`, `2m`,
//! `1h 30m`), and a bare number means seconds (`--duration 2` = `2s`), on `serve` and `load`
//! alike. Zero and junk are refused with the value named, by clap, before anything runs (exit 2).

use std::time::Duration;

/// A duration above zero: humantime syntax, or a bare number of seconds (fractions allowed).
pub fn positive_duration(s: &str) -> Result<Duration, String> {
    let text = s.trim();
    let parsed = match text.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs >= 0.0 => Duration::try_from_secs_f64(secs)
            .map_err(|_| format!("`{s}` is too long a duration"))?,
        Ok(_) => return Err(format!("`{s}` is not a duration above zero")),
        Err(_) => humantime::parse_duration(text).map_err(|e| {
            format!("`{s}` is not a duration such as 10s, 500ms, 2m or 30 (seconds): {e}")
        })?,
    };
    if parsed.is_zero() {
        return Err(format!("`{s}`: must be longer than zero"));
    }
    Ok(parsed)
}

/// A parser for a [`positive_duration`] between `min` and `max` inclusive, for flags whose
/// meaningful range is bounded (a poll interval, a run length).
pub fn duration_between(
    min: Duration,
    max: Duration,
) -> impl Fn(&str) -> Result<Duration, String> + Clone + Send + Sync + 'static {
    move |s| {
        let d = positive_duration(s)?;
        if d < min || d > max {
            return Err(format!(
                "`{s}` is outside {} ..= {}",
                humantime::format_duration(min),
                humantime::format_duration(max)
            ));
        }
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_number_is_seconds_and_units_are_humantime() {
        assert_eq!(positive_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(positive_duration("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(positive_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(positive_duration(" 250ms "), Ok(Duration::from_millis(250)));
        assert_eq!(positive_duration("1h 30m"), Ok(Duration::from_secs(5400)));
    }

    #[test]
    fn zero_negative_and_junk_are_refused_naming_the_value() {
        for bad in ["0", "0s", "-1", "soon", "", "1e400", "NaN"] {
            let err = positive_duration(bad).expect_err(bad);
            assert!(err.contains(&format!("`{bad}`")), "{bad}: {err}");
        }
    }

    #[test]
    fn bounds_are_inclusive_and_named() {
        let p = duration_between(Duration::from_millis(10), Duration::from_secs(60));
        assert_eq!(p("10ms"), Ok(Duration::from_millis(10)));
        assert_eq!(p("60"), Ok(Duration::from_secs(60)));
        let err = p("9ms").unwrap_err();
        assert!(err.contains("10ms ..= 1m"), "{err}");
        assert!(p("61s").is_err());
    }
}
