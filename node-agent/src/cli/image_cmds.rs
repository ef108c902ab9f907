//! Image commands.

use anyhow::{Context, bail};

use super::args::{ImageCommand, ImagesArgs};
use super::format::{human_duration, table};
use crate::container::ContainerManager;
use crate::image::{ImageConfig, ImageRecord};

pub(super) fn image(m: &ContainerManager, c: ImageCommand) -> anyhow::Result<u8> {
    match c {
        ImageCommand::Import { file } => {
            for rec in m.images().import(&file)? {
                println!("imported {} {}", rec.id, rec.repo_tags.join(" "));
            }
            Ok(0)
        }
        ImageCommand::ImportRootfs {
            source,
            reference,
            entrypoint,
            cmd,
            env,
        } => {
            let config = ImageConfig {
                entrypoint: entrypoint
                    .as_deref()
                    .map(|s| argv("--entrypoint", s))
                    .transpose()?,
                cmd: cmd.as_deref().map(|s| argv("--cmd", s)).transpose()?,
                env: if env.is_empty() {
                    vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()]
                } else {
                    env
                },
                ..Default::default()
            };
            let rec = m.images().import_rootfs(&source, &reference, config)?;
            println!("{}", rec.id);
            Ok(0)
        }
        ImageCommand::Rm { force, images } => {
            let in_use = m.in_use()?;
            let mut failed = false;
            for i in &images {
                match m.images().remove(i, &in_use, force) {
                    Ok(r) => {
                        for u in r.untagged {
                            println!("Untagged: {u}");
                        }
                        for d in r.deleted {
                            println!("Deleted: {d}");
                        }
                    }
                    Err(e) => {
                        eprintln!("error: {i}: {e}");
                        failed = true;
                    }
                }
            }
            Ok(u8::from(failed))
        }
        ImageCommand::Tag { source, target } => {
            m.images().tag(&source, &target)?;
            Ok(0)
        }
        ImageCommand::Inspect { images } => {
            let recs = images
                .iter()
                .map(|i| m.images().resolve(i))
                .collect::<Result<Vec<_>, _>>()?;
            println!("{}", serde_json::to_string_pretty(&recs)?);
            Ok(0)
        }
        ImageCommand::Ls(a) => list(m, a),
        ImageCommand::Pull {
            reference,
            registry,
        } => super::registry_cmds::pull(m.images(), &reference, &registry),
        ImageCommand::Push {
            image,
            reference,
            registry,
        } => super::registry_cmds::push(m.images(), &image, &reference, &registry),
    }
}

fn argv(flag: &str, s: &str) -> anyhow::Result<Vec<String>> {
    if s.trim_start().starts_with('[') {
        serde_json::from_str(s)
            .with_context(|| format!("{flag} {s:?} is not a JSON array of strings"))
    } else {
        Ok(s.split_whitespace().map(String::from).collect())
    }
}

pub(super) fn list(m: &ContainerManager, a: ImagesArgs) -> anyhow::Result<u8> {
    let images = m.images().list()?;
    match a.output.as_str() {
        _ if a.quiet => images.iter().for_each(|i| println!("{}", short_id(i))),
        "json" => println!("{}", serde_json::to_string_pretty(&images)?),
        "table" => print!("{}", images_table(&images)),
        other => bail!("invalid --output {other:?}: expected table or json"),
    }
    Ok(0)
}

fn short_id(i: &ImageRecord) -> &str {
    let hex = i.id.strip_prefix("sha256:").unwrap_or(&i.id);
    &hex[..hex.len().min(12)]
}

fn images_table(images: &[ImageRecord]) -> String {
    let now = berth_runtime::time::now_unix_nanos();
    let mut rows = vec![
        ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]
            .map(String::from)
            .to_vec(),
    ];
    for i in images {
        let created = i
            .created
            .as_deref()
            .and_then(berth_runtime::time::parse_rfc3339)
            .map(|t| format!("{} ago", human_duration(now - t)))
            .unwrap_or_default();
        let size = format!("{:.1}MB", i.size as f64 / 1e6);
        let tags: Vec<(String, String)> = if i.repo_tags.is_empty() {
            vec![("<none>".into(), "<none>".into())]
        } else {
            i.repo_tags
                .iter()
                .map(|t| match t.rsplit_once(':') {
                    Some((r, tag)) if !tag.contains('/') => (r.to_string(), tag.to_string()),
                    _ => (t.clone(), "latest".into()),
                })
                .collect()
        };
        for (repo, tag) in tags {
            rows.push(vec![
                repo,
                tag,
                short_id(i).to_string(),
                created.clone(),
                size.clone(),
            ]);
        }
    }
    table(&rows)
}
