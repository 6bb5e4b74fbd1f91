//! Small formatters for human output: UTC timestamps, relative times, sizes,
//! and short lower-case names for states, modes and exit results.
//!
//! Timestamps are done by hand (days-to-civil conversion) because pulling in a
//! date crate for one format is not worth the dependency.

use std::time::{SystemTime, UNIX_EPOCH};

use sandboxd_proto::v1::{
    ExitReason, ExitResult, PortForward, Protocol, SandboxMode, SandboxState,
};

use crate::json::enum_name;

/// Now, in milliseconds since the Unix epoch (0 if the clock is before 1970,
/// which only makes relative times read "just now").
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Splits milliseconds since the epoch into (y, m, d, hh, mm, ss, ms), UTC.
fn civil(ms: i64) -> (i64, u32, u32, u32, u32, u32, u32) {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000) as u32; // 0..1000 fits in u32
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400) as u32; // 0..86400 fits in u32
    // Howard Hinnant's days_from_civil inverse (public domain algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32; // 1..=31
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32; // 1..=12
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, sod / 3600, sod / 60 % 60, sod % 60, millis)
}

/// `2024-05-01T12:34:56Z`, or `-` for 0 (the proto's "unset").
pub(crate) fn rfc3339(ms: i64) -> String {
    if ms == 0 {
        return "-".into();
    }
    let (y, mo, d, h, mi, s, _) = civil(ms);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// `2024-05-01T12:34:56.789Z`, for event streams where order within a second
/// matters; `-` for 0.
pub(crate) fn rfc3339_millis(ms: i64) -> String {
    if ms == 0 {
        return "-".into();
    }
    let (y, mo, d, h, mi, s, milli) = civil(ms);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z")
}

/// "5 minutes ago", docker-style; `-` for 0.
pub(crate) fn relative(ms: i64, now: i64) -> String {
    if ms == 0 {
        return "-".into();
    }
    let secs = (now - ms) / 1000;
    // A timestamp slightly in the future is clock skew between client and
    // daemon, not worth a scary message.
    if secs < 1 {
        return "just now".into();
    }
    let (n, unit) = match secs {
        s if s < 60 => (s, "second"),
        s if s < 3600 => (s / 60, "minute"),
        s if s < 86_400 => (s / 3600, "hour"),
        s if s < 30 * 86_400 => (s / 86_400, "day"),
        s if s < 365 * 86_400 => (s / (30 * 86_400), "month"),
        s => (s / (365 * 86_400), "year"),
    };
    format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
}

/// Bytes with a binary suffix when exact (`64M`), else plain bytes, so that
/// what `inspect` prints can be pasted back into `--memory`.
pub(crate) fn size(bytes: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (1 << 40, "T"),
        (1 << 30, "G"),
        (1 << 20, "M"),
        (1 << 10, "K"),
    ];
    for (unit, suffix) in UNITS {
        if bytes >= unit && bytes % unit == 0 {
            return format!("{}{suffix}", bytes / unit);
        }
    }
    bytes.to_string()
}

/// Milli-CPUs as `--cpus` takes them (`0.5`, `2`).
pub(crate) fn cpus(millis: u64) -> String {
    if millis % 1000 == 0 {
        (millis / 1000).to_string()
    } else {
        let s = format!("{}.{:03}", millis / 1000, millis % 1000);
        s.trim_end_matches('0').to_owned()
    }
}

/// A proto enum name made friendly: `EXITED_STATE` with prefix/suffix removed,
/// lower-case, dashes. Unknown values show as their number.
fn friendly(name: Option<&str>, value: i32, strip_prefix: &str, strip_suffix: &str) -> String {
    match name {
        Some(n) => {
            let n = n.strip_prefix(strip_prefix).unwrap_or(n);
            let n = n.strip_suffix(strip_suffix).unwrap_or(n);
            n.to_ascii_lowercase().replace('_', "-")
        }
        None => format!("unknown({value})"),
    }
}

/// `running`, `exited`, ...
pub(crate) fn state(value: i32) -> String {
    friendly(enum_name::<SandboxState>(value), value, "", "_STATE")
}

/// `process`, `init`, `idle` (UNSPECIFIED means PROCESS per the proto).
pub(crate) fn mode(value: i32) -> String {
    if value == SandboxMode::Unspecified as i32 {
        return "process".into();
    }
    friendly(enum_name::<SandboxMode>(value), value, "", "")
}

/// `tcp` or `udp` (UNSPECIFIED means TCP per the proto).
pub(crate) fn protocol(value: i32) -> String {
    if value == Protocol::Unspecified as i32 {
        return "tcp".into();
    }
    friendly(enum_name::<Protocol>(value), value, "", "")
}

/// A port forward docker-style, as `--publish` takes it reversed:
/// `8080->80/tcp`.
pub(crate) fn port_forward(f: &PortForward) -> String {
    format!(
        "{}->{}/{}",
        f.host_port,
        f.sandbox_port,
        protocol(f.protocol)
    )
}

/// `created`, `exec-started`, ...
pub(crate) fn event_kind(value: i32) -> String {
    friendly(
        enum_name::<sandboxd_proto::v1::EventKind>(value),
        value,
        "EVENT_",
        "",
    )
}

/// A short exit summary: `exited(0)`, `signaled(9)`, `oom-killed(137)`.
pub(crate) fn exit_short(exit: Option<&ExitResult>) -> String {
    match exit {
        None => "-".into(),
        Some(e) if e.reason == ExitReason::Unspecified as i32 => "-".into(),
        Some(e) => {
            let reason = friendly(enum_name::<ExitReason>(e.reason), e.reason, "", "");
            if e.reason == ExitReason::Signaled as i32 {
                format!("{reason}({})", e.signal)
            } else {
                format!("{reason}({})", e.exit_code)
            }
        }
    }
}

/// A one-line description of an exit result for `wait` and `inspect`.
pub(crate) fn exit_long(e: &ExitResult) -> String {
    let reason =
        enum_name::<ExitReason>(e.reason).map_or_else(|| e.reason.to_string(), str::to_owned);
    let mut s = format!("{reason} exit_code={}", e.exit_code);
    if e.signal != 0 {
        s.push_str(&format!(" signal={}", e.signal));
    }
    if e.finished_at_ms != 0 {
        s.push_str(&format!(" finished={}", rfc3339(e.finished_at_ms)));
    }
    if !e.message.is_empty() {
        s.push_str(&format!(" message={:?}", e.message));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        let cases: &[(i64, &str, &str)] = &[
            (0, "-", "-"),
            (1, "1970-01-01T00:00:00Z", "1970-01-01T00:00:00.001Z"),
            (
                951_782_400_000,
                "2000-02-29T00:00:00Z",
                "2000-02-29T00:00:00.000Z",
            ),
            (
                1_714_566_896_789,
                "2024-05-01T12:34:56Z",
                "2024-05-01T12:34:56.789Z",
            ),
            (
                4_102_444_799_000,
                "2099-12-31T23:59:59Z",
                "2099-12-31T23:59:59.000Z",
            ),
            (-1000, "1969-12-31T23:59:59Z", "1969-12-31T23:59:59.000Z"),
        ];
        for (ms, secs, millis) in cases {
            assert_eq!(rfc3339(*ms), *secs, "{ms}");
            assert_eq!(rfc3339_millis(*ms), *millis, "{ms}");
        }
    }

    #[test]
    fn relative_times() {
        let now = 1_000_000_000;
        assert_eq!(relative(now + 5000, now), "just now");
        assert_eq!(relative(now - 1000, now), "1 second ago");
        assert_eq!(relative(now - 59_000, now), "59 seconds ago");
        assert_eq!(relative(now - 120_000, now), "2 minutes ago");
        assert_eq!(relative(now - 3_600_000, now), "1 hour ago");
        assert_eq!(relative(now - 3 * 86_400_000, now), "3 days ago");
        assert_eq!(relative(now - 62 * 86_400_000, now), "2 months ago");
        assert_eq!(relative(now - 941 * 86_400_000, now), "2 years ago");
    }

    #[test]
    fn sizes_and_cpus() {
        assert_eq!(size(64 << 20), "64M");
        assert_eq!(size(1 << 30), "1G");
        assert_eq!(size(1536), "1536"); // 1.5K: not a whole number of K
        assert_eq!(size(1000), "1000");
        assert_eq!(cpus(500), "0.5");
        assert_eq!(cpus(2000), "2");
        assert_eq!(cpus(1250), "1.25");
    }

    #[test]
    fn friendly_names() {
        assert_eq!(state(SandboxState::ExitedState as i32), "exited");
        assert_eq!(state(99), "unknown(99)");
        assert_eq!(mode(0), "process");
        assert_eq!(mode(SandboxMode::Idle as i32), "idle");
        assert_eq!(event_kind(3), "exec-started");
        let sig = ExitResult {
            reason: ExitReason::Signaled as i32,
            exit_code: 137,
            signal: 9,
            ..Default::default()
        };
        assert_eq!(exit_short(Some(&sig)), "signaled(9)");
        assert_eq!(exit_short(None), "-");
        let oom = ExitResult {
            reason: ExitReason::OomKilled as i32,
            exit_code: 137,
            ..Default::default()
        };
        assert_eq!(exit_short(Some(&oom)), "oom-killed(137)");
        assert_eq!(exit_long(&sig), "SIGNALED exit_code=137 signal=9");
    }

    #[test]
    fn port_forwards() {
        let cases: &[(i32, u32, u32, &str)] = &[
            (Protocol::Tcp as i32, 8080, 80, "8080->80/tcp"),
            (Protocol::Udp as i32, 5353, 53, "5353->53/udp"),
            (Protocol::Unspecified as i32, 2222, 22, "2222->22/tcp"),
            (9, 1, 2, "1->2/unknown(9)"),
        ];
        for (protocol, host_port, sandbox_port, want) in cases {
            let f = PortForward {
                protocol: *protocol,
                host_port: *host_port,
                sandbox_port: *sandbox_port,
            };
            assert_eq!(port_forward(&f), *want);
        }
    }
}

/// What a usage cell says when the backend does not measure a value: never
/// a zero that looks like a measurement.
pub(crate) const UNKNOWN: &str = "unknown";

/// CPU time in microseconds as seconds with millisecond precision.
pub(crate) fn cpu_time(usec: Option<u64>) -> String {
    usec.map_or_else(
        || UNKNOWN.to_owned(),
        |u| format!("{}.{:03}s", u / 1_000_000, (u / 1000) % 1000),
    )
}

/// A byte count for a human: binary units with one decimal ("1.5MiB").
pub(crate) fn bytes_human(bytes: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (1 << 40, "TiB"),
        (1 << 30, "GiB"),
        (1 << 20, "MiB"),
        (1 << 10, "KiB"),
    ];
    for (unit, suffix) in UNITS {
        if bytes >= unit {
            let tenths = bytes.saturating_mul(10) / unit;
            return format!("{}.{}{suffix}", tenths / 10, tenths % 10);
        }
    }
    format!("{bytes}B")
}

/// Block I/O as "READ / WRITTEN", or unknown.
pub(crate) fn block_io(u: &sandboxd_proto::v1::ResourceUsage) -> String {
    match (u.io_read_bytes, u.io_write_bytes) {
        (Some(r), Some(w)) => format!("{} / {}", bytes_human(r), bytes_human(w)),
        _ => UNKNOWN.to_owned(),
    }
}

#[cfg(test)]
mod usage_tests {
    use super::*;

    #[test]
    fn usage_cells() {
        assert_eq!(cpu_time(None), "unknown");
        assert_eq!(cpu_time(Some(0)), "0.000s");
        assert_eq!(cpu_time(Some(1_234_567)), "1.234s");
        for (b, want) in [
            (0, "0B"),
            (1023, "1023B"),
            (1024, "1.0KiB"),
            (1536, "1.5KiB"),
            (5 << 20, "5.0MiB"),
            (3 << 40, "3.0TiB"),
        ] {
            assert_eq!(bytes_human(b), want, "{b}");
        }
        let mut u = sandboxd_proto::v1::ResourceUsage::default();
        assert_eq!(block_io(&u), "unknown");
        u.io_read_bytes = Some(2048);
        u.io_write_bytes = Some(0);
        assert_eq!(block_io(&u), "2.0KiB / 0B");
    }
}
