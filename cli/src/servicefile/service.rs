//! One entry of `services:` read into a [`ServiceModel`]: the keys berth reads, the
//! Compose keys it refuses or warns about one by one.

use std::collections::BTreeMap;

use super::ctx::{Ctx, shorten};
use super::diag::Kind;
use super::environment::merge_env;
use super::keys;
use super::model::{Dependency, DependsCondition, HealthTest, Healthcheck, Link, ServiceModel};
use super::node::{Node, Value};
use super::shell;

/// Where the references of a service to other services are, for the checks across
/// services.
pub(crate) struct Refs<'n> {
    /// The service's key under `services:`.
    pub name: &'n Node,
    /// Each link's node, by position in `links`.
    pub links: Vec<&'n Node>,
    /// Each `depends_on` entry's node (the name), by position.
    pub depends_on: Vec<&'n Node>,
    /// The `ports` key.
    pub ports: Option<&'n Node>,
}

fn is_host_value(s: &str) -> bool {
    s.trim() == "host"
}

impl Ctx<'_> {
    fn refuse(&mut self, node: &Node, key: &str, message: String, hint: &str) {
        self.error(
            Kind::Unsupported,
            node.at,
            key,
            message,
            "cannot be honoured",
            Some(hint.to_owned()),
        );
    }

    fn ignored(&mut self, key_node: &Node, key: &str, hint: &str) {
        let name = key_node.key_name();
        self.warn(
            Kind::Unsupported,
            key_node.at,
            key,
            format!("`{name}` is not supported by berth and is ignored"),
            "not supported",
            Some(hint.to_owned()),
        );
    }

    fn not_applied(&mut self, key_node: &Node, key: &str, hint: &str) {
        let name = key_node.key_name();
        self.warn(
            Kind::NotApplied,
            key_node.at,
            key,
            format!("`{name}` is parsed but not yet applied by this berth version"),
            "not applied yet",
            Some(hint.to_owned()),
        );
    }

    /// Reads one service; the flag says it had no error of its own.
    pub(crate) fn service<'n>(
        &mut self,
        name: &'n Node,
        entries: &'n [(Node, Node)],
    ) -> (ServiceModel, Refs<'n>, bool) {
        let errors_before = self.error_count();
        let service = name.key_name();
        let prefix = format!("services.{service}");
        let mut m = ServiceModel {
            name: service.clone(),
            ..ServiceModel::default()
        };
        let mut refs = Refs {
            name,
            links: Vec::new(),
            depends_on: Vec::new(),
            ports: None,
        };
        let mut image: Option<String> = None;
        let mut image_given = false;
        let mut build: Option<&Node> = None;
        let mut env_file: Vec<(String, String)> = Vec::new();
        let mut environment: Vec<(String, String)> = Vec::new();
        let mut deploy_labels = BTreeMap::new();
        for (k, v) in entries {
            let key = k.key_name();
            let path = format!("{prefix}.{key}");
            // `ports:` with nothing after it is no ports, as in Compose.
            if matches!(v.value, Value::Null) && key != "image" {
                continue;
            }
            match key.as_str() {
                "image" => {
                    image_given = true;
                    if let Some(i) = self.string(v, &path) {
                        if i.trim().is_empty() || i.chars().any(char::is_whitespace) {
                            self.error(
                                Kind::Invalid,
                                v.at,
                                &path,
                                format!("`{path}`: `{}` is not an image reference", shorten(&i)),
                                "not an image reference",
                                Some("write a reference such as `redis:7` or `example.org/app:1.2`".into()),
                            );
                        } else {
                            image = Some(i);
                        }
                    }
                }
                "command" => m.command = self.words(v, &path),
                "entrypoint" => m.entrypoint = self.words(v, &path),
                "environment" => environment = self.environment(v, &path),
                "env_file" => env_file = self.env_files(v, &path),
                "ports" => {
                    m.ports = self.ports(v, &path);
                    refs.ports = Some(k);
                }
                "expose" => m.expose = self.expose(v, &path),
                "links" => {
                    let (links, nodes) = self.links(v, &path);
                    m.links = links;
                    refs.links = nodes;
                }
                "depends_on" => {
                    let (deps, nodes) = self.depends_on(v, &path);
                    m.depends_on = deps;
                    refs.depends_on = nodes;
                    if !m.depends_on.is_empty() {
                        self.not_applied(k, &path, "berth starts every service at once; a service must wait for what it needs itself");
                    }
                }
                "volumes" => {
                    m.volumes = self.volumes(v, &path);
                    if !m.volumes.is_empty() {
                        self.not_applied(k, &path, "nothing is mounted: data written there is lost when a task is replaced");
                    }
                }
                "labels" => m.labels.extend(self.labels(v, &path)),
                "healthcheck" => m.healthcheck = self.healthcheck(v, &path),
                "stop_grace_period" => {
                    m.stop_grace_period = self.duration(v, &path);
                    if m.stop_grace_period.is_some() {
                        self.not_applied(k, &path, "tasks get berth's default time to stop");
                    }
                }
                "deploy" => m.deploy = self.deploy(v, &path, &mut deploy_labels),
                "build" => build = Some(k),
                "privileged" => {
                    if self.boolean(v, &path) == Some(true) {
                        self.refuse(v, &path, format!("`{path}: true` cannot be honoured by berth"), "berth does not run privileged containers; give the service what it needs another way, or run it outside berth");
                    }
                }
                "read_only" => {
                    if self.boolean(v, &path) == Some(true) {
                        self.refuse(v, &path, format!("`{path}: true` cannot be honoured by berth"), "berth cannot mount the root file system read-only yet; the container would be writable. Remove `read_only` to accept that");
                    }
                }
                "network_mode" => {
                    if let Some(mode) = self.string(v, &path) {
                        match mode.as_str() {
                            "bridge" | "default" => self.ignored(k, &path, "every service is on berth's network; it is ignored"),
                            "host" => self.refuse(v, &path, format!("`{path}: host` cannot be honoured by berth"), "berth gives every container its own network namespace; publish the ports the service needs under `ports:` instead"),
                            _ => self.refuse(v, &path, format!("`{path}: {}` cannot be honoured by berth", shorten(&mode)), "berth gives every container its own network on berth's bridge; remove `network_mode` and use `links:` to reach other services"),
                        }
                    }
                }
                "pid" | "ipc" | "uts" | "userns_mode" => {
                    if let Some(mode) = self.string(v, &path) {
                        if is_host_value(&mode) {
                            self.refuse(v, &path, format!("`{path}: host` cannot be honoured by berth"), "berth does not share the host's namespaces with containers");
                        } else {
                            self.ignored(k, &path, "berth gives every container its own namespaces; it is ignored");
                        }
                    }
                }
                "cap_drop" => self.refuse(k, &path, format!("`{path}` cannot be honoured by berth"), "berth cannot drop capabilities yet, so the container would keep them; remove `cap_drop` to accept that"),
                "security_opt" => {
                    if self.string_or_list(v, &path).is_some_and(|l| !l.is_empty()) {
                        self.refuse(k, &path, format!("`{path}` cannot be honoured by berth"), "berth does not apply security options yet, so the container would run without them; remove `security_opt` to accept that");
                    }
                }
                "user" => {
                    if let Some(u) = self.string(v, &path) {
                        if matches!(u.trim(), "root" | "0" | "0:0" | "root:root") {
                            self.ignored(k, &path, "containers run as the image's user; it is ignored");
                        } else {
                            self.refuse(v, &path, format!("`{path}: {}` cannot be honoured by berth", shorten(&u)), "berth runs the image's default user, which may be root; set `USER` in the image instead and remove `user:`");
                        }
                    }
                }
                "restart" => self.ignored(k, &path, "berth restarts tasks by `deploy.restart_policy` (any exit, by default); use `deploy.restart_policy.condition: none | on-failure | any`"),
                "scale" => self.ignored(k, &path, "use `deploy.replicas`"),
                _ => self.other_key(&keys::SERVICE, k, &path),
            }
        }
        m.labels.extend(deploy_labels);
        match (image, build) {
            (Some(i), b) => {
                m.image = i;
                if let Some(b) = b {
                    self.warn(
                        Kind::Unsupported,
                        b.at,
                        &format!("{prefix}.build"),
                        "`build` is ignored: berth does not build images and runs `image:`",
                        "ignored",
                        Some("build the image yourself and import it with `berth image import`".into()),
                    );
                }
            }
            (None, Some(b)) if !image_given => self.error(
                Kind::Unsupported,
                b.at,
                &format!("{prefix}.build"),
                format!("service `{service}` has `build` but no `image`"),
                "berth does not build images",
                Some("berth does not build images: build it and import it with `berth image import`, then set `image:`".into()),
            ),
            (None, None) if !image_given => self.error(
                Kind::Missing,
                name.at,
                &prefix,
                format!("service `{service}` has no `image`"),
                "no image",
                Some("add `image:` with the image to run, e.g. `image: redis:7`".into()),
            ),
            (None, _) => {}
        }
        m.environment = merge_env(env_file, environment);
        let ok = self.error_count() == errors_before;
        (m, refs, ok)
    }

    pub(crate) fn error_count(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == super::diag::Severity::Error)
            .count()
    }

    /// `command:` or `entrypoint:`: a string split into words, or a list.
    fn words(&mut self, node: &Node, key: &str) -> Option<Vec<String>> {
        match &node.value {
            Value::Null => None,
            Value::Map(_) => {
                self.type_error(node, key, "a string or a list of strings");
                None
            }
            Value::Seq(_) => self
                .string_or_list(node, key)
                .map(|l| l.into_iter().map(|(s, _)| s).collect()),
            _ => {
                let text = self.string(node, key)?;
                match shell::split(&text) {
                    Ok(w) => Some(w),
                    Err(e) => {
                        self.error(
                            Kind::Invalid,
                            node.at,
                            key,
                            format!("`{key}` cannot be split into words: {e}"),
                            "bad quoting",
                            Some("close the quote, or write the command as a list: [\"sh\", \"-c\", \"...\"]".into()),
                        );
                        None
                    }
                }
            }
        }
    }

    /// `labels:` as a mapping or a list of `KEY=VALUE`.
    pub(crate) fn labels(&mut self, node: &Node, key: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        match &node.value {
            Value::Map(entries) => {
                for (k, v) in entries {
                    let name = k.key_name();
                    let path = format!("{key}.{name}");
                    let value = match &v.value {
                        Value::Null => Some(String::new()),
                        _ => self.string(v, &path),
                    };
                    out.extend(value.map(|v| (name, v)));
                }
            }
            Value::Seq(_) => {
                for (text, _) in self.string_or_list(node, key).unwrap_or_default() {
                    match text.split_once('=') {
                        Some((k, v)) => out.push((k.to_owned(), v.to_owned())),
                        None => out.push((text, String::new())),
                    }
                }
            }
            _ => self.type_error(node, key, "a mapping or a list of KEY=VALUE"),
        }
        out
    }

    /// `links:`: `service` or `service:alias`.
    fn links<'n>(&mut self, node: &'n Node, key: &str) -> (Vec<Link>, Vec<&'n Node>) {
        let mut links = Vec::new();
        let mut nodes = Vec::new();
        for (text, n) in self.string_or_list_only(node, key) {
            let (service, alias) = match text.split_once(':') {
                Some((s, a)) => (s.trim(), a.trim()),
                None => (text.trim(), text.trim()),
            };
            links.push(Link {
                service: service.to_owned(),
                alias: alias.to_owned(),
            });
            nodes.push(n);
        }
        (links, nodes)
    }

    fn string_or_list_only<'n>(&mut self, node: &'n Node, key: &str) -> Vec<(String, &'n Node)> {
        match &node.value {
            Value::Seq(_) => self.string_or_list(node, key).unwrap_or_default(),
            _ => {
                self.type_error(node, key, "a list");
                Vec::new()
            }
        }
    }

    /// `depends_on:`: a list of names, or a mapping of name to `{condition, restart,
    /// required}`.
    fn depends_on<'n>(&mut self, node: &'n Node, key: &str) -> (Vec<Dependency>, Vec<&'n Node>) {
        let mut deps = Vec::new();
        let mut nodes = Vec::new();
        let plain = |service: String| Dependency {
            service,
            condition: DependsCondition::Started,
            restart: false,
            required: true,
        };
        match &node.value {
            Value::Seq(_) => {
                for (s, n) in self.string_or_list(node, key).unwrap_or_default() {
                    deps.push(plain(s));
                    nodes.push(n);
                }
            }
            Value::Map(entries) => {
                for (k, v) in entries {
                    let service = k.key_name();
                    let path = format!("{key}.{service}");
                    let mut d = plain(service);
                    if let Value::Null = v.value {
                    } else if let Some(opts) = self.map(v, &path) {
                        for (ok, ov) in opts {
                            let name = ok.key_name();
                            let p = format!("{path}.{name}");
                            match name.as_str() {
                                "condition" => match self.string(ov, &p).as_deref() {
                                    Some("service_started") => d.condition = DependsCondition::Started,
                                    Some("service_healthy") => d.condition = DependsCondition::Healthy,
                                    Some("service_completed_successfully") => d.condition = DependsCondition::CompletedSuccessfully,
                                    Some(other) => self.error(Kind::Invalid, ov.at, &p, format!("`{p}` is `{}`; expected service_started, service_healthy or service_completed_successfully", shorten(other)), "unknown condition", None),
                                    None => {}
                                },
                                "restart" => d.restart = self.boolean(ov, &p).unwrap_or(false),
                                "required" => d.required = self.boolean(ov, &p).unwrap_or(true),
                                _ => self.other_key(&keys::DEPENDS_ON, ok, &p),
                            }
                        }
                    }
                    deps.push(d);
                    nodes.push(k);
                }
            }
            _ => self.type_error(node, key, "a list of services or a mapping"),
        }
        (deps, nodes)
    }

    /// `healthcheck:`.
    fn healthcheck(&mut self, node: &Node, key: &str) -> Option<Healthcheck> {
        let entries = self.map(node, key)?;
        let mut h = Healthcheck::default();
        for (k, v) in entries {
            let name = k.key_name();
            let path = format!("{key}.{name}");
            match name.as_str() {
                "test" => h.test = self.health_test(v, &path),
                "interval" => h.interval = self.duration(v, &path),
                "timeout" => h.timeout = self.duration(v, &path),
                "start_period" => h.start_period = self.duration(v, &path),
                "start_interval" => h.start_interval = self.duration(v, &path),
                "retries" => h.retries = self.u32(v, &path),
                "disable" => h.disable = self.boolean(v, &path).unwrap_or(false),
                _ => self.other_key(&keys::HEALTHCHECK, k, &path),
            }
        }
        Some(h)
    }

    fn health_test(&mut self, node: &Node, key: &str) -> Option<HealthTest> {
        let help = "write a string (run with /bin/sh -c), or a list starting with CMD, CMD-SHELL, HTTP, TCP or NONE: [\"CMD\", \"redis-cli\", \"ping\"], [\"HTTP\", \"8080\", \"/health\"], [\"TCP\", \"5432\"]";
        match &node.value {
            Value::Seq(_) => {
                let items = self.string_or_list(node, key)?;
                let words: Vec<String> = items.iter().map(|(s, _)| s.clone()).collect();
                match words.split_first() {
                    Some((first, rest)) if first == "NONE" => {
                        let _ = rest;
                        Some(HealthTest::None)
                    }
                    Some((first, rest)) if first == "CMD" && !rest.is_empty() => {
                        Some(HealthTest::Cmd(rest.to_vec()))
                    }
                    Some((first, rest)) if first == "CMD-SHELL" && !rest.is_empty() => {
                        Some(HealthTest::Shell(rest.join(" ")))
                    }
                    Some((first, rest)) if first == "HTTP" || first == "TCP" => {
                        let port = rest
                            .first()
                            .and_then(|p| p.parse::<u16>().ok())
                            .filter(|p| *p > 0);
                        let path = rest.get(1).cloned().unwrap_or_else(|| "/".to_owned());
                        let max = if first == "HTTP" { 3 } else { 2 };
                        // (message, the item pointed at, its label)
                        let fault = match port {
                            None => Some((
                                format!(
                                    "`{key}`: {first} needs a container port in 1-65535 after it"
                                ),
                                1,
                                "expected a port",
                            )),
                            Some(_) if items.len() > max => Some((
                                format!(
                                    "`{key}`: {first} takes {} after it",
                                    if first == "HTTP" {
                                        "a port and a path"
                                    } else {
                                        "only a port"
                                    }
                                ),
                                max,
                                "one too many",
                            )),
                            Some(_) if !path.starts_with('/') => Some((
                                format!(
                                    "`{key}`: the HTTP path must start with /, not {}",
                                    shorten(&path)
                                ),
                                2,
                                "expected /path",
                            )),
                            Some(_) => None,
                        };
                        if let Some((message, item, label)) = fault {
                            let at = items.get(item).map_or(node.at, |(_, n)| n.at);
                            self.error(Kind::Invalid, at, key, message, label, Some(help.into()));
                            return None;
                        }
                        let port = port.unwrap_or_default();
                        Some(if first == "HTTP" {
                            HealthTest::Http { port, path }
                        } else {
                            HealthTest::Tcp { port }
                        })
                    }
                    Some((first, _)) => {
                        let at = items.first().map_or(node.at, |(_, n)| n.at);
                        self.error(Kind::Invalid, at, key, format!("`{key}` starts with `{}`; expected CMD, CMD-SHELL, HTTP, TCP or NONE", shorten(first)), "expected CMD, CMD-SHELL, HTTP, TCP or NONE", Some(help.into()));
                        None
                    }
                    None => {
                        self.error(
                            Kind::Invalid,
                            node.at,
                            key,
                            format!("`{key}` is empty"),
                            "empty",
                            Some(help.into()),
                        );
                        None
                    }
                }
            }
            _ => {
                let s = self.string(node, key)?;
                if s.trim().is_empty() {
                    self.error(
                        Kind::Invalid,
                        node.at,
                        key,
                        format!("`{key}` is empty"),
                        "empty",
                        Some(help.into()),
                    );
                    return None;
                }
                Some(HealthTest::Shell(s))
            }
        }
    }
}
