//! `sandboxctl images`, `rmi`, `image import|inspect`: the OCI image store
//! (ImageService).

use sandboxd_proto::v1::{
    Image, ImportImageRequest, InspectImageRequest, ListImagesRequest, PullImageRequest,
    RemoveImageRequest, image_service_client::ImageServiceClient, pull_image_progress::Event,
};
use serde_json::{Value, json};
use std::io::Read;

use super::{Ctx, out, print_json};
use crate::cli::{ImageCommand, ImageImportArgs, PullArgs, PullPolicy, RmiArgs};
use crate::error::CliError;
use crate::table::Table;

/// Bytes per ImportImage message (well under the 4 MiB message cap).
const CHUNK: usize = 1 << 20;

fn image_json(i: &Image) -> Value {
    json!({
        "refs": i.refs,
        "digest": i.digest,
        "config_digest": i.config_digest,
        "platform": i.platform,
        "layers": i.layers,
        "size": i.size,
        "created": i.created,
        "entrypoint": i.entrypoint,
        "cmd": i.cmd,
        "env": i.env,
        "working_dir": i.working_dir,
        "user": i.user,
    })
}

/// "1.2 MiB".
fn human(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

fn short(digest: &str) -> String {
    digest
        .strip_prefix("sha256:")
        .unwrap_or(digest)
        .chars()
        .take(12)
        .collect()
}

fn table(images: &[Image]) -> String {
    let mut t = Table::new(&["REFERENCE", "ID", "PLATFORM", "LAYERS", "SIZE"]);
    for i in images {
        let refs = if i.refs.is_empty() {
            vec!["<none>".to_owned()]
        } else {
            i.refs.clone()
        };
        for r in refs {
            t.row([
                r,
                short(&i.digest),
                i.platform.clone(),
                i.layers.len().to_string(),
                human(i.size),
            ]);
        }
    }
    t.render()
}

/// ListImages.
pub(super) async fn images(ctx: &Ctx) -> Result<i32, CliError> {
    let mut client = ImageServiceClient::new(ctx.channel().await?);
    let list = client.list_images(ListImagesRequest {}).await?.into_inner();
    if ctx.json {
        print_json(&Value::Array(list.images.iter().map(image_json).collect()))?;
    } else {
        out(&table(&list.images))?;
    }
    Ok(0)
}

/// RemoveImage, per reference; 1 when any failed.
pub(super) async fn rmi(ctx: &Ctx, a: RmiArgs) -> Result<i32, CliError> {
    let mut client = ImageServiceClient::new(ctx.channel().await?);
    let mut code = 0;
    for r in a.references {
        match client
            .remove_image(RemoveImageRequest {
                reference: r.clone(),
            })
            .await
        {
            Ok(resp) => {
                let resp = resp.into_inner();
                out(&format!(
                    "removed {r} ({} blobs, {} layers freed)\n",
                    resp.blobs_removed, resp.layers_removed
                ))?;
            }
            Err(s) => {
                eprintln!("sandboxctl: rmi {r}: {}", s.message());
                code = 1;
            }
        }
    }
    Ok(code)
}

/// PullImage: one line per event, or (on a terminal) one line per layer
/// redrawn in place.
pub(super) async fn pull(ctx: &Ctx, a: PullArgs) -> Result<i32, CliError> {
    let image = pull_with_progress(ctx, &a.reference).await?;
    if ctx.json {
        print_json(&image_json(&image))?;
    } else {
        out(&format!("{}\n", image.digest))?;
    }
    Ok(0)
}

/// For `run` with an OCI image: makes sure the image is stored (as
/// [`ensure`] does for `policy`) and returns its run-time defaults
/// (Entrypoint, Cmd, …), with a single InspectImage when it is stored (it
/// both checks and reads), or from what PullImage returns.
pub(super) async fn ensure_run_config(
    ctx: &Ctx,
    image: &str,
    policy: PullPolicy,
) -> Result<sandboxd_core::oci::RunConfig, CliError> {
    let pullable = sandboxd_core::oci::Reference::parse(image)
        .is_ok_and(|r| r.registry().is_some())
        && sandboxd_core::oci::is_reference(image);
    let stored = if pullable && policy == PullPolicy::Always {
        None
    } else {
        let mut client = ImageServiceClient::new(ctx.channel().await?);
        match client
            .inspect_image(InspectImageRequest {
                reference: image.to_owned(),
            })
            .await
        {
            Ok(i) => Some(i.into_inner()),
            Err(s)
                if s.code() == tonic::Code::NotFound
                    && pullable
                    && policy == PullPolicy::Missing =>
            {
                None
            }
            Err(s) => return Err(s.into()),
        }
    };
    let i = match stored {
        Some(i) => i,
        None => pull_with_progress(ctx, image).await?,
    };
    let some = |v: Vec<String>| Some(v).filter(|v| !v.is_empty());
    let text = |v: String| Some(v).filter(|v| !v.is_empty());
    Ok(sandboxd_core::oci::RunConfig {
        user: text(i.user),
        env: some(i.env),
        entrypoint: some(i.entrypoint),
        cmd: some(i.cmd),
        working_dir: text(i.working_dir),
    })
}

async fn pull_with_progress(ctx: &Ctx, reference: &str) -> Result<Image, CliError> {
    use std::io::IsTerminal;
    let tty = std::io::stderr().is_terminal() && !ctx.json;
    let mut client = ImageServiceClient::new(ctx.channel().await?);
    let mut stream = client
        .pull_image(PullImageRequest {
            reference: reference.to_owned(),
        })
        .await?
        .into_inner();
    let mut done = None;
    while let Some(p) = stream.message().await? {
        match p.event {
            Some(Event::Resolved(r)) => {
                eprintln!("{reference}: resolved {} ({} layers)", r.digest, r.layers);
            }
            Some(Event::Layer(l)) => {
                let line = if l.cached {
                    format!("{}: already stored", short(&l.digest))
                } else {
                    format!(
                        "{}: {} / {}",
                        short(&l.digest),
                        human(l.done),
                        human(l.total)
                    )
                };
                if tty {
                    let end = if l.done == l.total { "\n" } else { "" };
                    eprint!("\r\x1b[K{line}{end}");
                } else if l.cached || l.done == l.total {
                    eprintln!("{line}");
                }
            }
            Some(Event::Unpacking(_)) => eprintln!("unpacking and verifying layers"),
            Some(Event::Done(i)) => done = Some(i),
            None => {}
        }
    }
    done.ok_or_else(|| CliError::Protocol("PullImage ended without the image".into()))
}

/// `image ...`.
pub(super) async fn image(ctx: &Ctx, cmd: ImageCommand) -> Result<i32, CliError> {
    match cmd {
        ImageCommand::Import(a) => import(ctx, a).await,
        ImageCommand::Inspect { reference } => {
            let mut client = ImageServiceClient::new(ctx.channel().await?);
            let i = client
                .inspect_image(InspectImageRequest { reference })
                .await?
                .into_inner();
            print_json(&image_json(&i))?;
            Ok(0)
        }
        ImageCommand::Ls => images(ctx).await,
        ImageCommand::Rm(a) => rmi(ctx, a).await,
    }
}

/// ImportImage: streams FILE ("-": stdin) to the daemon.
async fn import(ctx: &Ctx, a: ImageImportArgs) -> Result<i32, CliError> {
    let mut reader: Box<dyn std::io::Read + Send> = if a.file == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(&a.file).map_err(|e| CliError::Io("opening the archive", e))?)
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<ImportImageRequest>(4);
    let name = a.name.unwrap_or_default();
    let sender = tokio::task::spawn_blocking(move || -> Result<(), CliError> {
        let mut first = true;
        loop {
            let mut buf = vec![0u8; CHUNK];
            let n = reader
                .read(&mut buf)
                .map_err(|e| CliError::Io("reading the archive", e))?;
            if n == 0 && !first {
                return Ok(());
            }
            buf.truncate(n);
            let msg = ImportImageRequest {
                name: if first { name.clone() } else { String::new() },
                data: buf,
            };
            first = false;
            if tx.blocking_send(msg).is_err() || n == 0 {
                return Ok(());
            }
        }
    });
    let mut client = ImageServiceClient::new(ctx.channel().await?);
    let resp = client
        .import_image(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await;
    sender
        .await
        .map_err(|e| CliError::Protocol(format!("archive reader: {e}")))??;
    let resp = resp?.into_inner();
    if ctx.json {
        print_json(&Value::Array(resp.images.iter().map(image_json).collect()))?;
    } else {
        out(&table(&resp.images))?;
    }
    Ok(0)
}
