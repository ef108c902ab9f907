//! A real registry for tests: Debian's `docker-registry` (Distribution v2) on 127.0.0.1 with
//! a free port, its storage, configuration and log in a temporary directory, killed on drop.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BINARY: &str = "/usr/bin/docker-registry";

/// How a test registry is set up.
#[derive(Default)]
pub(crate) struct Options {
    /// `(certificate PEM, key PEM)`: serve HTTPS.
    pub tls: Option<(String, String)>,
    /// An htpasswd file's content: require Basic authentication.
    pub htpasswd: Option<String>,
}

pub(crate) struct Registry {
    dir: tempfile::TempDir,
    child: Child,
    /// `127.0.0.1:<port>`.
    pub host: String,
}

/// True when the registry binary is installed; otherwise prints a loud SKIPPED line.
pub(crate) fn available(test: &str) -> bool {
    if Path::new(BINARY).exists() {
        return true;
    }
    eprintln!(
        "\n*** SKIPPED: {test}: needs {BINARY} (apt-get install docker-registry; scripts/lib.sh install_deps does) ***\n"
    );
    false
}

/// A free port on 127.0.0.1 (free when asked; the registry binds it right after).
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Registry {
    pub(crate) fn start(options: Options) -> Registry {
        let dir = tempfile::tempdir().expect("temporary directory");
        let port = free_port();
        let host = format!("127.0.0.1:{port}");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  maintenance:\n    uploadpurging:\n      enabled: false\nhttp:\n  addr: {host}\n",
            dir.path().join("data").display()
        );
        if let Some((cert, key)) = &options.tls {
            let (c, k) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
            fs::write(&c, cert).expect("write certificate");
            fs::write(&k, key).expect("write key");
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                c.display(),
                k.display()
            ));
        }
        if let Some(htpasswd) = &options.htpasswd {
            let p = dir.path().join("htpasswd");
            fs::write(&p, htpasswd).expect("write htpasswd");
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
                p.display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        fs::write(&config_path, config).expect("write registry config");
        let log = fs::File::create(dir.path().join("registry.log")).expect("create log");
        let child = Command::new(BINARY)
            .arg("serve")
            .arg(&config_path)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let registry = Registry { dir, child, host };
        registry.wait_ready(port);
        registry
    }

    fn wait_ready(&self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "docker-registry did not listen on {} within 20 s; its log:\n{}",
                self.host,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What the registry logged (its access log included).
    pub(crate) fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Access-log lines of successful `GET`s of the blob `digest` in `repository`.
    pub(crate) fn blob_gets(&self, repository: &str, digest: &str) -> usize {
        let needle = format!("\"GET /v2/{repository}/blobs/{digest} HTTP/1.1\" 200");
        self.log().lines().filter(|l| l.contains(&needle)).count()
    }

    /// The file the registry keeps blob `digest` in.
    pub(crate) fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
