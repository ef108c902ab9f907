//! `volumes:` on a service: short `SOURCE:TARGET[:MODE]` or `TARGET`, and long syntax.

use super::ctx::Ctx;
use super::diag::Kind;
use super::keys;
use super::model::{Volume, VolumeKind};
use super::node::{Node, Value};

fn is_path(s: &str) -> bool {
    s.starts_with(['/', '.', '~'])
}

impl Ctx<'_> {
    fn bad_volume(&mut self, node: &Node, key: &str, message: String) {
        self.error(
            Kind::Invalid,
            node.at,
            key,
            format!("`{key}`: {message}"),
            "bad volume",
            Some("write SOURCE:TARGET[:ro] (TARGET an absolute path), e.g. \"db-data:/var/lib/postgresql/data\" or \"./conf:/etc/app:ro\"".into()),
        );
    }

    /// `volumes:`.
    pub fn volumes(&mut self, node: &Node, key: &str) -> Vec<Volume> {
        let mut out = Vec::new();
        let Some(items) = self.seq(node, key) else {
            return out;
        };
        for (i, item) in items.iter().enumerate() {
            let key = format!("{key}[{i}]");
            let v = match &item.value {
                Value::Map(_) => self.long_volume(item, &key),
                _ => self
                    .string(item, &key)
                    .and_then(|t| self.short_volume(item, &key, &t)),
            };
            out.extend(v);
        }
        out
    }

    fn short_volume(&mut self, node: &Node, key: &str, text: &str) -> Option<Volume> {
        let parts: Vec<&str> = text.split(':').collect();
        let (source, target, mode) = match parts.as_slice() {
            [t] => (None, *t, None),
            [s, t] => (Some(*s), *t, None),
            [s, t, m] => (Some(*s), *t, Some(*m)),
            _ => {
                self.bad_volume(node, key, format!("`{text}` has too many `:`"));
                return None;
            }
        };
        if !target.starts_with('/') {
            self.bad_volume(
                node,
                key,
                format!("the target `{target}` is not an absolute path"),
            );
            return None;
        }
        let mut read_only = false;
        for m in mode.unwrap_or("").split(',').filter(|m| !m.is_empty()) {
            match m {
                "ro" => read_only = true,
                "rw" | "z" | "Z" | "nocopy" | "cached" | "delegated" | "consistent" | "shared"
                | "rshared" | "slave" | "rslave" | "private" | "rprivate" => {}
                _ => {
                    self.bad_volume(node, key, format!("unknown mode `{m}` (expected ro or rw)"));
                    return None;
                }
            }
        }
        let kind = match source {
            Some(s) if is_path(s) => VolumeKind::Bind,
            Some("") => {
                self.bad_volume(node, key, "the source is empty".into());
                return None;
            }
            _ => VolumeKind::Volume,
        };
        Some(Volume {
            kind,
            source: source.map(str::to_owned),
            target: target.to_owned(),
            read_only,
        })
    }

    fn long_volume(&mut self, node: &Node, key: &str) -> Option<Volume> {
        let entries = self.map(node, key)?;
        let mut kind = None;
        let mut source = None;
        let mut target = None;
        let mut read_only = false;
        for (k, v) in entries {
            let name = k.key_name();
            let path = format!("{key}.{name}");
            match name.as_str() {
                "type" => match self.string(v, &path).as_deref() {
                    Some("bind") => kind = Some(VolumeKind::Bind),
                    Some("volume") => kind = Some(VolumeKind::Volume),
                    Some("tmpfs") => kind = Some(VolumeKind::Tmpfs),
                    Some(other) => {
                        self.bad_volume(
                            v,
                            &path,
                            format!("type `{other}` is not one of bind, volume, tmpfs"),
                        );
                        return None;
                    }
                    None => return None,
                },
                "source" => source = self.string(v, &path),
                "target" => target = Some((self.string(v, &path)?, v)),
                "read_only" => read_only = self.boolean(v, &path).unwrap_or(false),
                "bind" | "volume" | "tmpfs" | "image" => {
                    self.map(v, &path);
                }
                "consistency" => {
                    self.string(v, &path);
                }
                _ => self.other_key(&keys::VOLUME, k, &path),
            }
        }
        let Some((target, target_node)) = target else {
            self.error(
                Kind::Missing,
                node.at,
                key,
                format!("`{key}` has no `target`"),
                "no target",
                Some("give the path inside the container: `target: /data`".into()),
            );
            return None;
        };
        if !target.starts_with('/') {
            self.bad_volume(
                target_node,
                &format!("{key}.target"),
                format!("the target `{target}` is not an absolute path"),
            );
            return None;
        }
        let kind = kind.unwrap_or(match &source {
            Some(s) if is_path(s) => VolumeKind::Bind,
            _ => VolumeKind::Volume,
        });
        Some(Volume {
            kind,
            source,
            target,
            read_only,
        })
    }
}
