//! Parsing human units: durations (`500ms`, `30s`, `2m`, `1h`), relative timeouts (`500%`),
//! and sizes (`512MiB`, `2GiB`, `1.5G`; a bare number is MiB: `512`).

use std::time::Duration;

use crate::sched::TimeoutSpec;

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let v: f64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a duration (e.g. 500ms, 30s, 2m)"))?;
    let secs = match unit.trim() {
        "ms" => v / 1000.0,
        "s" | "" => v,
        "m" | "min" => v * 60.0,
        "h" => v * 3600.0,
        other => {
            return Err(format!(
                "'{s}': unknown duration unit '{other}' (use ms, s, m or h)"
            ))
        }
    };
    if !secs.is_finite() || secs <= 0.0 {
        return Err(format!("'{s}' must be a positive duration"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `--task-timeout`: a limit, or `none` (no limit at all).
pub fn parse_timeout_arg(s: &str) -> Result<Option<TimeoutSpec>, String> {
    if s.trim().eq_ignore_ascii_case("none") || s.trim().eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    parse_timeout(s).map(Some)
}

pub fn parse_timeout(s: &str) -> Result<TimeoutSpec, String> {
    if let Some(p) = s.trim().strip_suffix('%') {
        let v: f64 = p
            .parse()
            .map_err(|_| format!("'{s}' is not a percentage"))?;
        if !(v.is_finite() && v > 0.0) {
            return Err(format!("'{s}' must be a positive percentage"));
        }
        return Ok(TimeoutSpec::PercentOfMedian(v));
    }
    parse_duration(s).map(TimeoutSpec::Fixed)
}

/// A size in bytes. A bare number means MiB (the seed's `memory_limit_per_worker = 512`);
/// `B` asks for bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let v: f64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a size (e.g. 512MiB, 2GiB)"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "mib" => (1u64 << 20) as f64,
        "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "gib" => (1u64 << 30) as f64,
        "t" | "tb" => 1e12,
        "tib" => (1u64 << 40) as f64,
        other => {
            return Err(format!(
                "'{s}': unknown size unit '{other}' (use B, KiB, MiB, GiB, TiB or KB, MB, GB, TB)"
            ))
        }
    };
    let bytes = v * mult;
    if !bytes.is_finite() || bytes < 1.0 {
        return Err(format!("'{s}' must be a positive size"));
    }
    if bytes >= u64::MAX as f64 {
        return Err(format!("'{s}' is too large"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(
            parse_timeout("500%").unwrap(),
            TimeoutSpec::PercentOfMedian(500.0)
        );
        assert_eq!(parse_size("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_size("512").unwrap(), 512 << 20);
        assert_eq!(parse_size("4096B").unwrap(), 4096);
        assert_eq!(parse_timeout_arg("none").unwrap(), None);
        for bad in ["0", "lots", "-1MiB", "0MiB", "5 parsecs"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        for bad in ["0s", "soon", "5 fortnights", ""] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
