//! The image config: the OCI / Docker JSON document (`application/vnd.oci.image.config.v1+json`)
//! and the part of it berth keeps, [`ImageConfig`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::digest::Digest;
use super::error::ImageError;

/// The `PATH` an image gets when its config sets none.
pub const DEFAULT_PATH_ENV: &str =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What a container of this image runs by default: the `config` object of the image config.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// `Entrypoint`.
    pub entrypoint: Option<Vec<String>>,
    /// `Cmd`.
    pub cmd: Option<Vec<String>>,
    /// `Env`, `KEY=value` strings.
    pub env: Vec<String>,
    /// `WorkingDir` (an empty string is read as unset).
    pub working_dir: Option<String>,
    /// `User`, `user[:group]` by name or number (an empty string is read as unset).
    pub user: Option<String>,
    /// `ExposedPorts` keys, e.g. `80/tcp`.
    pub exposed_ports: BTreeSet<String>,
    /// `StopSignal`, e.g. `SIGQUIT`.
    pub stop_signal: Option<String>,
    /// `Labels`.
    pub labels: BTreeMap<String, String>,
}

/// The OCI image config document, limited to the fields berth reads or writes. Unknown fields
/// (history, container_config, ...) are ignored: this is a foreign format, not berth's own.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct OciImageConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<OciContainerConfig>,
    pub rootfs: OciRootFs,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct OciRootFs {
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub diff_ids: Option<Vec<String>>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct OciContainerConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
}

/// A parsed image config with its layer digests checked.
pub(crate) struct ParsedConfig {
    pub doc: OciImageConfig,
    pub diff_ids: Vec<Digest>,
}

impl ParsedConfig {
    /// Parses config JSON read from `path` (for messages).
    pub(crate) fn parse(bytes: &[u8], path: &Path) -> Result<Self, ImageError> {
        let doc: OciImageConfig =
            serde_json::from_slice(bytes).map_err(|source| ImageError::Json {
                path: path.to_owned(),
                source,
            })?;
        if let Some(kind) = doc.rootfs.kind.as_deref()
            && kind != "layers"
        {
            return Err(ImageError::invalid(
                path,
                format!("rootfs.type is {kind:?}, expected \"layers\""),
            ));
        }
        let diff_ids = doc
            .rootfs
            .diff_ids
            .iter()
            .flatten()
            .map(|d| Digest::parse(d))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ImageError::invalid(path, format!("rootfs.diff_ids: {e}")))?;
        Ok(ParsedConfig { doc, diff_ids })
    }

    /// The part berth keeps.
    pub(crate) fn image_config(&self) -> ImageConfig {
        let Some(c) = &self.doc.config else {
            return ImageConfig::default();
        };
        let non_empty = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
        ImageConfig {
            entrypoint: c.entrypoint.clone(),
            cmd: c.cmd.clone(),
            env: c.env.clone().unwrap_or_default(),
            working_dir: non_empty(&c.working_dir),
            user: non_empty(&c.user),
            exposed_ports: c
                .exposed_ports
                .iter()
                .flat_map(|ports| ports.keys().cloned())
                .collect(),
            stop_signal: non_empty(&c.stop_signal),
            labels: c.labels.clone().unwrap_or_default(),
        }
    }
}

/// Serialises a new image config for a locally built image (`import_rootfs`). An `Env` with no
/// `PATH=` entry gets [`DEFAULT_PATH_ENV`] first.
pub(crate) fn new_config_json(config: &ImageConfig, diff_ids: &[Digest]) -> Vec<u8> {
    let mut env = config.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH_ENV.to_owned());
    }
    let doc = OciImageConfig {
        created: Some(rfc3339_now()),
        architecture: Some(oci_arch().to_owned()),
        os: Some("linux".to_owned()),
        config: Some(OciContainerConfig {
            user: config.user.clone(),
            exposed_ports: (!config.exposed_ports.is_empty()).then(|| {
                config
                    .exposed_ports
                    .iter()
                    .map(|p| (p.clone(), serde_json::Value::Object(Default::default())))
                    .collect()
            }),
            env: Some(env),
            entrypoint: config.entrypoint.clone(),
            cmd: config.cmd.clone(),
            working_dir: config.working_dir.clone(),
            labels: (!config.labels.is_empty()).then(|| config.labels.clone()),
            stop_signal: config.stop_signal.clone(),
        }),
        rootfs: OciRootFs {
            kind: Some("layers".to_owned()),
            diff_ids: Some(diff_ids.iter().map(ToString::to_string).collect()),
        },
    };
    serde_json::to_vec(&doc).expect("serialising an image config to memory cannot fail")
}

/// The host's architecture in OCI / Go naming (`amd64`, `arm64`, ...).
pub(crate) fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "arm" => "arm",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "powerpc64" => "ppc64",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        "loongarch64" => "loong64",
        "mips64" if cfg!(target_endian = "little") => "mips64le",
        other => other,
    }
}

/// The current time as RFC 3339 UTC, e.g. `2024-05-01T12:00:00Z`.
pub(crate) fn rfc3339_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    rfc3339(secs)
}

fn rfc3339(secs: u64) -> String {
    berth_runtime::time::rfc3339_secs(i128::from(secs) * 1_000_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_docker_config_with_nulls_and_unknown_fields() {
        let json = br#"{
            "architecture": "amd64", "os": "linux", "created": "2024-01-02T03:04:05.123Z",
            "config": {"Entrypoint": null, "Cmd": ["sh"], "Env": null, "WorkingDir": "",
                       "User": "1000:1000", "ExposedPorts": {"80/tcp": {}, "53/udp": {}},
                       "StopSignal": "SIGQUIT", "Labels": null, "OnBuild": null},
            "history": [{"created_by": "x"}],
            "rootfs": {"type": "layers", "diff_ids": [
              "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"]}
        }"#;
        let parsed = ParsedConfig::parse(json, Path::new("c.json")).unwrap();
        let c = parsed.image_config();
        assert_eq!(c.entrypoint, None);
        assert_eq!(c.cmd, Some(vec!["sh".to_owned()]));
        assert!(c.env.is_empty());
        assert_eq!(c.working_dir, None);
        assert_eq!(c.user.as_deref(), Some("1000:1000"));
        assert_eq!(
            c.exposed_ports.iter().collect::<Vec<_>>(),
            ["53/udp", "80/tcp"]
        );
        assert_eq!(c.stop_signal.as_deref(), Some("SIGQUIT"));
        assert_eq!(parsed.diff_ids.len(), 1);
        assert_eq!(parsed.doc.architecture.as_deref(), Some("amd64"));
    }

    #[test]
    fn null_config_and_diff_ids_are_accepted() {
        let json = br#"{"config": null, "rootfs": {"type": "layers", "diff_ids": null}}"#;
        let parsed = ParsedConfig::parse(json, Path::new("c.json")).unwrap();
        assert_eq!(parsed.image_config(), ImageConfig::default());
        assert!(parsed.diff_ids.is_empty());
    }

    #[test]
    fn bad_diff_id_names_the_file() {
        let json = br#"{"rootfs": {"type": "layers", "diff_ids": ["md5:abc"]}}"#;
        let err = ParsedConfig::parse(json, Path::new("/x/c.json"))
            .err()
            .unwrap();
        let msg = err.to_string();
        assert!(
            msg.contains("/x/c.json") && msg.contains("md5:abc"),
            "{msg}"
        );
    }

    #[test]
    fn new_config_round_trips_and_adds_path() {
        let config = ImageConfig {
            entrypoint: Some(vec!["/bin/app".into()]),
            env: vec!["A=1".into()],
            exposed_ports: ["8080/tcp".to_owned()].into(),
            labels: [("k".to_owned(), "v".to_owned())].into(),
            ..ImageConfig::default()
        };
        let d = Digest::of(b"layer");
        let json = new_config_json(&config, std::slice::from_ref(&d));
        let parsed = ParsedConfig::parse(&json, Path::new("new")).unwrap();
        let back = parsed.image_config();
        assert_eq!(
            back.env,
            vec![DEFAULT_PATH_ENV.to_owned(), "A=1".to_owned()]
        );
        assert_eq!(back.entrypoint, config.entrypoint);
        assert_eq!(back.exposed_ports, config.exposed_ports);
        assert_eq!(back.labels, config.labels);
        assert_eq!(parsed.diff_ids, vec![d]);
        assert_eq!(parsed.doc.os.as_deref(), Some("linux"));
        let text = String::from_utf8(json).unwrap();
        assert!(text.contains(r#""ExposedPorts":{"8080/tcp":{}}"#), "{text}");
    }

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
