//! `sandboxctl logs`: the main process's stdout and stderr (LogService),
//! written to this command's own stdout and stderr, as `docker logs` does.

use std::io::Write;

use sandboxd_proto::v1::{
    LogStream, LogStreams, LogsRequest, log_service_client::LogServiceClient,
};

use super::Ctx;
use crate::error::CliError;
use crate::format;

/// Streams the log; with `--follow` until the sandbox ends or the user
/// interrupts.
pub(super) async fn logs(ctx: &Ctx, args: crate::cli::LogsArgs) -> Result<i32, CliError> {
    let since_unix_nanos = match &args.since {
        Some(s) => parse_since(s, format::now_ms())
            .map_err(|e| CliError::Usage(format!("--since: {e}")))?,
        None => 0,
    };
    let streams = match (args.stdout, args.stderr) {
        (true, false) => LogStreams::Stdout,
        (false, true) => LogStreams::Stderr,
        _ => LogStreams::Both,
    };
    let mut client = LogServiceClient::new(ctx.channel().await?);
    let req = LogsRequest {
        sandbox_id: args.id,
        follow: args.follow,
        tail: args.tail,
        since_unix_nanos,
        streams: streams as i32,
    };
    let mut stream = client.logs(req).await?.into_inner();
    while let Some(entry) = stream.message().await? {
        if entry.skipped_files > 0 {
            eprintln!(
                "sandboxctl: {} rotated log file(s) were removed before they could be read",
                entry.skipped_files
            );
        }
        let mut bytes = Vec::with_capacity(entry.data.len() + 32);
        if args.timestamps {
            bytes.extend_from_slice(timestamp(entry.time_unix_nanos).as_bytes());
            bytes.push(b' ');
        }
        bytes.extend_from_slice(&entry.data);
        let written = if entry.stream == LogStream::Stderr as i32 {
            let mut e = std::io::stderr().lock();
            e.write_all(&bytes).and_then(|()| e.flush())
        } else {
            let mut o = std::io::stdout().lock();
            o.write_all(&bytes).and_then(|()| o.flush())
        };
        written.map_err(CliError::stdout)?;
    }
    Ok(0)
}

/// RFC 3339 with nanoseconds, as `docker logs -t`.
fn timestamp(ns: i64) -> String {
    let ms_text = format::rfc3339(ns.div_euclid(1_000_000_000) * 1000);
    // "YYYY-MM-DDTHH:MM:SSZ" → with the fraction before the Z.
    let base = ms_text.trim_end_matches('Z');
    format!("{base}.{:09}Z", ns.rem_euclid(1_000_000_000))
}

/// `--since`: a duration back from now (`30s`, `5m`, `2h`, `1d`, combined
/// as `1h30m`), Unix seconds (`1700000000`, `1700000000.5`), or an RFC 3339
/// time (`2024-05-01T12:00:00Z`, `2024-05-01T14:00:00+02:00`, fraction
/// allowed). Returns nanoseconds since the epoch.
fn parse_since(s: &str, now_ms: i64) -> Result<i64, String> {
    let bad = || {
        format!("{s:?} is not a duration (30s, 5m, 1h30m, 2d), Unix seconds or an RFC 3339 time")
    };
    if s.contains('T') || s.contains('t') {
        return rfc3339_ns(s).ok_or_else(bad);
    }
    if s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        let secs: i64 = int.parse().map_err(|_| bad())?;
        let frac_ns = frac_ns(frac).ok_or_else(bad)?;
        return secs
            .checked_mul(1_000_000_000)
            .and_then(|n| n.checked_add(frac_ns))
            .ok_or_else(bad);
    }
    let mut total_ms: i64 = 0;
    let mut digits = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let n: i64 = digits.parse().map_err(|_| bad())?;
        digits.clear();
        let unit_ms = match c {
            's' => 1000,
            'm' => 60_000,
            'h' => 3_600_000,
            'd' => 86_400_000,
            _ => return Err(bad()),
        };
        total_ms = n
            .checked_mul(unit_ms)
            .and_then(|v| total_ms.checked_add(v))
            .ok_or_else(bad)?;
    }
    if !digits.is_empty() || total_ms == 0 && s.is_empty() {
        return Err(bad());
    }
    Ok((now_ms - total_ms).max(0).saturating_mul(1_000_000))
}

/// Up to 9 fraction digits as nanoseconds.
fn frac_ns(frac: &str) -> Option<i64> {
    if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if frac.is_empty() {
        return Some(0);
    }
    let padded = format!("{frac:0<9}");
    padded.parse().ok()
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` as nanoseconds since the epoch.
fn rfc3339_ns(s: &str) -> Option<i64> {
    let num = |t: &str| -> Option<i64> {
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        t.parse().ok()
    };
    let (date, rest) = s.split_once(['T', 't'])?;
    let mut d = date.split('-');
    let (y, mo, day) = (num(d.next()?)?, num(d.next()?)?, num(d.next()?)?);
    if d.next().is_some() || !(1..=12).contains(&mo) || !(1..=31).contains(&day) {
        return None;
    }
    let (clock, offset_s) = if let Some(c) = rest.strip_suffix(['Z', 'z']) {
        (c, 0)
    } else {
        let at = rest.rfind(['+', '-'])?;
        let (c, off) = rest.split_at(at);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let (oh, om) = off[1..].split_once(':')?;
        (c, sign * (num(oh)? * 3600 + num(om)? * 60))
    };
    let (hms, frac) = clock.split_once('.').unwrap_or((clock, ""));
    let mut t = hms.split(':');
    let (h, mi, sec) = (num(t.next()?)?, num(t.next()?)?, num(t.next()?)?);
    if t.next().is_some() || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    // days_from_civil (Howard Hinnant), the inverse of format::civil.
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset_s;
    secs.checked_mul(1_000_000_000)?.checked_add(frac_ns(frac)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_values() {
        let now_ms = 1_700_000_000_000;
        let rows: [(&str, Option<i64>); 13] = [
            ("30s", Some((now_ms - 30_000) * 1_000_000)),
            ("1h30m", Some((now_ms - 5_400_000) * 1_000_000)),
            ("2d", Some((now_ms - 172_800_000) * 1_000_000)),
            ("1700000000", Some(1_700_000_000_000_000_000)),
            ("1700000000.25", Some(1_700_000_000_250_000_000)),
            ("2023-11-14T22:13:20Z", Some(1_700_000_000_000_000_000)),
            (
                "2023-11-15T00:13:20.5+02:00",
                Some(1_700_000_000_500_000_000),
            ),
            ("2023-11-14T21:13:20-01:00", Some(1_700_000_000_000_000_000)),
            ("5", Some(5_000_000_000)),
            ("5x", None),
            ("m", None),
            ("2023-13-01T00:00:00Z", None),
            ("", None),
        ];
        for (input, want) in rows {
            assert_eq!(parse_since(input, now_ms).ok(), want, "{input}");
        }
    }

    #[test]
    fn timestamps_have_nanoseconds() {
        assert_eq!(
            timestamp(1_700_000_000_000_000_007),
            "2023-11-14T22:13:20.000000007Z"
        );
    }
}
