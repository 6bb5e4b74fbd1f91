//! `sandboxctl caps`: the daemon's backend and isolation matrix.

use sandboxd_proto::v1::{
    BackendKind, GetCapabilitiesRequest, host_service_client::HostServiceClient,
};

use super::{Ctx, matrix_table, out, print_json};
use crate::error::CliError;
use crate::json::{self, enum_name};
use crate::table::Table;

/// A list for a key/value block; `(none)` rather than an empty cell.
fn list(items: &[String]) -> String {
    if items.is_empty() {
        "(none)".into()
    } else {
        items.join(", ")
    }
}

/// GetCapabilities.
pub(super) async fn caps(ctx: &Ctx) -> Result<i32, CliError> {
    let mut client = HostServiceClient::new(ctx.channel().await?);
    let caps = client
        .get_capabilities(GetCapabilitiesRequest {})
        .await?
        .into_inner();
    if ctx.json {
        print_json(&json::capabilities(&caps))?;
        return Ok(0);
    }
    let backend = enum_name::<BackendKind>(caps.backend)
        .map_or_else(|| caps.backend.to_string(), str::to_owned);
    let mut head = Table::headless();
    head.row(["Backend:".into(), backend]);
    head.row(["Reason:", caps.backend_reason.as_str()]);
    head.row(["OS:".into(), format!("{} {}", caps.os, caps.os_version)]);
    head.row(["Daemon:", caps.daemon_version.as_str()]);
    head.row(["Features:".into(), list(&caps.build_features)]);
    head.row(["Images:".into(), list(&caps.images)]);
    out(&format!(
        "{}\n{}",
        head.render(),
        matrix_table(&caps.matrix)
    ))?;
    Ok(0)
}
