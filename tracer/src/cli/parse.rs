//! Values of the command line that clap does not parse itself: durations and sizes.

use std::time::Duration;

/// Parses `64MiB`, `1GiB`, `500KiB`, `10MB`, `4096` (bytes).
pub fn parse_size(text: &str) -> std::result::Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size (try 64MiB)"))?;
    let unit_bytes: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{text}` (KiB, MiB, GiB)"
            ));
        }
    };
    value
        .checked_mul(unit_bytes)
        .filter(|&bytes| bytes >= 4096)
        .ok_or_else(|| format!("`{text}`: a size of at least 4KiB is needed"))
}

/// Parses `250ms`, `10s`, `1.5s`, `5m`, `1h`, `7d`, `100us`/`100µs`, `10ns`; a bare number is seconds.
pub fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (try 500ms, 10s, 5m)"))?;
    let seconds_per_unit = match unit.trim() {
        "" | "s" | "sec" | "secs" => 1.0,
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "ns" => 1e-9,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{text}` (ns, us, ms, s, m, h, d)"
            ));
        }
    };
    let seconds = value * seconds_per_unit;
    if !seconds.is_finite() || seconds > 1e9 {
        return Err(format!("`{text}` is too long"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// [`parse_duration`] for what must last a while (`--duration`): zero is refused.
pub fn parse_nonzero_duration(text: &str) -> std::result::Result<Duration, String> {
    let duration = parse_duration(text)?;
    if duration.is_zero() {
        return Err(format!("`{text}`: a duration of zero would trace nothing"));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("100µs"), Ok(Duration::from_micros(100)));
        assert_eq!(parse_duration("100us"), Ok(Duration::from_micros(100)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("1e999s").is_err());
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_nonzero_duration("0").is_err());
        assert!(parse_nonzero_duration("0ms").is_err());
        assert_eq!(parse_nonzero_duration("1ns"), Ok(Duration::from_nanos(1)));
    }
}
