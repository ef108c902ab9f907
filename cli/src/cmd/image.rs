//! `berth image import | ls | rm`: the images of the nodes' stores, through the controllers
//! (each node answers for itself).

use std::collections::BTreeMap;
use std::io::Read;

use berth_proto::v1;
use berth_proto::v1::import_image_request::Frame;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::Io;
use crate::args::{GlobalArgs, ImageCommand, ImageImportArgs, ImageLsArgs, ImageRmArgs};
use crate::client::ClientError;
use crate::error::CliError;
use crate::exit;
use crate::output::table::Table;
use crate::output::{self, time::rfc3339};

/// The size of one uploaded frame (the controller takes up to 1 MiB).
const CHUNK: usize = 512 * 1024;

/// One image across the nodes, as `ls` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageView {
    /// Its id.
    pub id: String,
    /// Its tags.
    pub tags: Vec<String>,
    /// Its unpacked size, bytes.
    pub size: u64,
    /// When it was created (RFC 3339), if known.
    pub created: String,
    /// The hostnames of the nodes that have it.
    pub nodes: Vec<String>,
}

/// `1.2MB`, as `docker images` prints sizes.
fn size_text(bytes: u64) -> String {
    match bytes {
        b if b >= 1_000_000_000 => format!("{:.2}GB", b as f64 / 1e9),
        b if b >= 1_000_000 => format!("{:.1}MB", b as f64 / 1e6),
        b if b >= 1_000 => format!("{:.1}kB", b as f64 / 1e3),
        b => format!("{b}B"),
    }
}

/// The images of every node's answer, merged by id (sorted by first tag, then id).
pub fn merge(nodes: &[v1::NodeImageResult]) -> Vec<ImageView> {
    let mut by_id: BTreeMap<String, ImageView> = BTreeMap::new();
    for n in nodes.iter().filter(|n| n.error.is_empty()) {
        for i in &n.images {
            let view = by_id.entry(i.id.clone()).or_insert_with(|| ImageView {
                id: i.id.clone(),
                tags: Vec::new(),
                size: i.size,
                created: if i.created > 0 {
                    rfc3339(i.created.saturating_mul(1_000_000_000))
                } else {
                    String::new()
                },
                nodes: Vec::new(),
            });
            for t in &i.tags {
                if !view.tags.contains(t) {
                    view.tags.push(t.clone());
                }
            }
            view.nodes.push(n.hostname.clone());
        }
    }
    let mut images: Vec<ImageView> = by_id.into_values().collect();
    for i in &mut images {
        i.tags.sort();
        i.nodes.sort();
    }
    images.sort_by(|a, b| (a.tags.first(), &a.id).cmp(&(b.tags.first(), &b.id)));
    images
}

/// The `ls` table; `asked` is how many nodes answered.
pub fn table(images: &[ImageView], asked: usize) -> String {
    let mut t = Table::new(&["IMAGE", "ID", "SIZE", "CREATED", "NODES"]);
    for i in images {
        let short =
            i.id.trim_start_matches("sha256:")
                .chars()
                .take(12)
                .collect();
        let name = if i.tags.is_empty() {
            "<none>".to_owned()
        } else {
            i.tags.join(", ")
        };
        let nodes = format!("{}/{asked} ({})", i.nodes.len(), i.nodes.join(", "));
        t.row(vec![
            name,
            short,
            size_text(i.size),
            i.created.clone(),
            nodes,
        ]);
    }
    t.render()
}

/// Notes each node's failure on standard error; whether any failed.
fn note_failures(nodes: &[v1::NodeImageResult], io: &mut Io<'_>) -> bool {
    let mut failed = false;
    for n in nodes.iter().filter(|n| !n.error.is_empty()) {
        io.note(&format!("error: node {}: {}\n", n.hostname, n.error));
        failed = true;
    }
    failed
}

/// Runs `berth image ...`.
pub async fn run(g: &GlobalArgs, c: &ImageCommand, io: &mut Io<'_>) -> Result<u8, CliError> {
    match c {
        ImageCommand::Import(a) => import(g, a, io).await,
        ImageCommand::Ls(a) => ls(g, a, io).await,
        ImageCommand::Rm(a) => rm(g, a, io).await,
        ImageCommand::Push(a) => super::image_push::run(a, io).await,
    }
}

async fn ls(g: &GlobalArgs, a: &ImageLsArgs, io: &mut Io<'_>) -> Result<u8, CliError> {
    let client = super::connect(g, io).await?;
    let selector = v1::NodeSelector {
        nodes: a.nodes.nodes.clone(),
    };
    let answer = client
        .call("list the images", |mut c| {
            let nodes = Some(selector.clone());
            async move { c.list_images(v1::ListImagesRequest { nodes }).await }
        })
        .await?;
    let failed = note_failures(&answer.nodes, io);
    let answered = answer.nodes.iter().filter(|n| n.error.is_empty()).count();
    let images = merge(&answer.nodes);
    io.print(&output::render(a.output, &images, || {
        table(&images, answered)
    })?)?;
    Ok(if failed { exit::ERROR } else { exit::OK })
}

async fn rm(g: &GlobalArgs, a: &ImageRmArgs, io: &mut Io<'_>) -> Result<u8, CliError> {
    let client = super::connect(g, io).await?;
    let mut failed = false;
    for image in &a.images {
        let request = v1::RemoveImageRequest {
            reference: image.clone(),
            nodes: Some(v1::NodeSelector {
                nodes: a.nodes.nodes.clone(),
            }),
        };
        let answer = client
            .call(&format!("remove {image}"), |mut c| {
                let request = request.clone();
                async move { c.remove_image(request).await }
            })
            .await?;
        failed |= note_failures(&answer.nodes, io);
        for n in answer.nodes.iter().filter(|n| n.error.is_empty()) {
            for i in &n.images {
                let what = if i.size > 0 || i.tags.is_empty() {
                    format!("deleted {}", i.id)
                } else {
                    format!("untagged {}", i.tags.join(", "))
                };
                io.print(&format!("{}: {what}\n", n.hostname))?;
            }
        }
    }
    Ok(if failed { exit::ERROR } else { exit::OK })
}

/// Reads `path` (`-`: standard input) into frames on `tx`, from a thread (reads block).
fn upload(
    path: std::path::PathBuf,
    tx: mpsc::Sender<v1::ImportImageRequest>,
) -> std::thread::JoinHandle<Result<u64, CliError>> {
    std::thread::spawn(move || {
        let mut input: Box<dyn Read> = if path.as_os_str() == "-" {
            Box::new(std::io::stdin())
        } else {
            Box::new(
                std::fs::File::open(&path).map_err(|source| CliError::ReadFile {
                    path: path.clone(),
                    source,
                })?,
            )
        };
        let mut sent = 0u64;
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = input.read(&mut buf).map_err(|source| CliError::ReadFile {
                path: path.clone(),
                source,
            })?;
            if n == 0 {
                return Ok(sent);
            }
            sent += n as u64;
            let frame = Frame::Data(buf[..n].to_vec());
            if tx
                .blocking_send(v1::ImportImageRequest { frame: Some(frame) })
                .is_err()
            {
                return Ok(sent);
            }
        }
    })
}

async fn import(g: &GlobalArgs, a: &ImageImportArgs, io: &mut Io<'_>) -> Result<u8, CliError> {
    let client = super::connect(g, io).await?;
    let mut failed = false;
    for path in &a.archives {
        if path.as_os_str() != "-" && !path.is_file() {
            return Err(CliError::ReadFile {
                path: path.clone(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            });
        }
        let (tx, rx) = mpsc::channel(4);
        let start = Frame::Start(v1::NodeSelector {
            nodes: a.nodes.nodes.clone(),
        });
        let _ = tx.send(v1::ImportImageRequest { frame: Some(start) }).await;
        let reader = upload(path.clone(), tx);
        let what = format!("import {}", path.display());
        let answer = client
            .control()
            .import_image(ReceiverStream::new(rx))
            .await
            .map_err(|s| ClientError::call(&what, &s));
        // A read error cut the upload short: the nodes discarded it.
        let read = reader.join().unwrap_or(Ok(0))?;
        let answer = answer?.into_inner();
        failed |= note_failures(&answer.nodes, io);
        for n in answer.nodes.iter().filter(|n| n.error.is_empty()) {
            let names: Vec<String> = n
                .images
                .iter()
                .map(|i| {
                    if i.tags.is_empty() {
                        i.id.clone()
                    } else {
                        i.tags.join(", ")
                    }
                })
                .collect();
            io.print(&format!(
                "{}: loaded {} ({})\n",
                n.hostname,
                names.join("; "),
                size_text(read)
            ))?;
        }
    }
    Ok(if failed { exit::ERROR } else { exit::OK })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(host: &str, images: Vec<v1::ImageInfo>, error: &str) -> v1::NodeImageResult {
        v1::NodeImageResult {
            node_id: format!("id-{host}"),
            hostname: host.into(),
            images,
            error: error.into(),
        }
    }

    fn image(id: &str, tag: &str) -> v1::ImageInfo {
        v1::ImageInfo {
            id: id.into(),
            tags: vec![tag.into()],
            size: 1_234_567,
            created: 1_796_399_627,
        }
    }

    #[test]
    fn images_are_merged_across_nodes_in_a_table() {
        let nodes = vec![
            node(
                "n1",
                vec![image("sha256:aaaaaaaaaaaaaaaa", "busybox:demo")],
                "",
            ),
            node(
                "n2",
                vec![
                    image("sha256:aaaaaaaaaaaaaaaa", "busybox:demo"),
                    image("sha256:bbbbbbbbbbbbbbbb", "redis:7"),
                ],
                "",
            ),
            node("n3", vec![], "node n3 is not connected"),
        ];
        let merged = merge(&nodes);
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0].nodes, vec!["n1", "n2"]);
        assert_eq!(
            table(&merged, 2),
            "IMAGE          ID             SIZE    CREATED                NODES\n\
             busybox:demo   aaaaaaaaaaaa   1.2MB   2026-12-04T15:53:47Z   2/2 (n1, n2)\n\
             redis:7        bbbbbbbbbbbb   1.2MB   2026-12-04T15:53:47Z   1/2 (n2)\n"
        );
    }
}
