//! `sandboxctl events`: the daemon's event stream, one line per event.

use sandboxd_proto::v1::{Event, WatchEventsRequest, event_service_client::EventServiceClient};

use super::{Ctx, out};
use crate::error::CliError;
use crate::format;
use crate::json;

/// WatchEvents until the daemon closes the stream (or the user interrupts).
pub(super) async fn events(ctx: &Ctx, args: crate::cli::EventsArgs) -> Result<i32, CliError> {
    let mut client = EventServiceClient::new(ctx.channel().await?);
    let req = WatchEventsRequest {
        after_revision: args.after,
        sandbox_id: args.sandbox.unwrap_or_default(),
    };
    let mut stream = client.watch_events(req).await?.into_inner();
    while let Some(event) = stream.message().await? {
        // Compact JSON, one object per line, so `jq -c`/`while read` work.
        if ctx.json {
            super::print_json(&json::event(&event))?;
        } else {
            out(&format!("{}\n", human(&event)))?;
        }
    }
    Ok(0)
}

/// `REV TIME KIND SANDBOX [pid=N] [exit=...]`; the revision first so a user
/// can resume with `--after` from the last line.
fn human(e: &Event) -> String {
    let mut line = format!(
        "{} {} {} {}",
        e.revision,
        format::rfc3339_millis(e.time_ms),
        format::event_kind(e.kind),
        if e.sandbox_id.is_empty() {
            "-"
        } else {
            e.sandbox_id.as_str()
        }
    );
    if e.pid != 0 {
        line.push_str(&format!(" pid={}", e.pid));
    }
    if e.exit.is_some() {
        line.push_str(&format!(" exit={}", format::exit_short(e.exit.as_ref())));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use sandboxd_proto::v1::{EventKind, ExitReason, ExitResult};

    #[test]
    fn event_lines() {
        let started = Event {
            revision: 3,
            kind: EventKind::EventExecStarted as i32,
            sandbox_id: "0123456789abcdef".into(),
            pid: 77,
            exit: None,
            time_ms: 1_714_566_896_789,
        };
        assert_eq!(
            human(&started),
            "3 2024-05-01T12:34:56.789Z exec-started 0123456789abcdef pid=77"
        );
        let exited = Event {
            revision: 4,
            kind: EventKind::EventExited as i32,
            pid: 0,
            exit: Some(ExitResult {
                reason: ExitReason::Exited as i32,
                exit_code: 1,
                ..Default::default()
            }),
            ..started
        };
        assert_eq!(
            human(&exited),
            "4 2024-05-01T12:34:56.789Z exited 0123456789abcdef exit=exited(1)"
        );
    }
}
