//! Service files: golden tests (each `fixtures/servicefile/NAME.yaml` is parsed and the
//! rendered outcome compared with `NAME.out`; `BLESS=1 cargo test` rewrites the `.out`
//! files), and tests of the public API through whole files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use berth_cli::servicefile::model::{Mode, PortMode, PortRange, Protocol};
use berth_cli::servicefile::{
    Fs, Kind, ParseError, Parsed, RenderStyle, Severity, Source, parse, render, to_spec,
};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/servicefile")
}

/// The environment every golden test sees.
fn env() -> BTreeMap<String, String> {
    [
        ("TAG", "1.2"),
        ("WEB_PORT", "8080"),
        ("REPLICAS", "3"),
        ("EMPTY", ""),
        ("FROM_ENV", "from the environment"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

fn parse_text(text: &str) -> Result<Parsed, ParseError> {
    parse(
        &[Source::new("test.yaml", fixtures(), text)],
        &env(),
        &BTreeMap::<PathBuf, String>::new(),
    )
}

/// What a golden file holds: the rendered errors or warnings, then the specs.
fn outcome(name: &str, text: &str) -> String {
    let result = parse(&[Source::new(name, fixtures(), text)], &env(), &Fs);
    let mut out = String::new();
    match result {
        Ok(parsed) => {
            out.push_str(&format!(
                "OK: {} service(s), {} warning(s)\n\n",
                parsed.services.len(),
                parsed.warnings.len()
            ));
            out.push_str(&render(&parsed.warnings, RenderStyle::PLAIN));
            for s in &parsed.services {
                // Labels are a HashMap in the generated code: print them sorted.
                let mut spec = to_spec(s);
                let labels: BTreeMap<String, String> =
                    std::mem::take(&mut spec.labels).into_iter().collect();
                out.push_str(&format!("{spec:#?}\nlabels: {labels:?}\n"));
            }
        }
        Err(e) => {
            out.push_str(&format!(
                "ERROR: {} error(s), {} warning(s)\n{e}\n\n",
                e.errors.len(),
                e.warnings.len()
            ));
            out.push_str(&render(&e.errors, RenderStyle::PLAIN));
            out.push_str(&render(&e.warnings, RenderStyle::PLAIN));
        }
    }
    out
}

#[test]
fn golden_files() {
    let bless = std::env::var_os("BLESS").is_some();
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .expect("the fixtures folder")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    inputs.sort();
    assert!(inputs.len() >= 10, "fixtures missing: {inputs:?}");
    let mut failed = Vec::new();
    for input in &inputs {
        let name = input
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = std::fs::read_to_string(input).expect("a fixture");
        let got = outcome(&name, &text);
        let expected_path = input.with_extension("out");
        if bless {
            std::fs::write(&expected_path, &got).expect("write the golden file");
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if expected != got {
            eprintln!("--- {} differs; got:\n{got}", expected_path.display());
            failed.push(name);
        }
    }
    assert!(
        failed.is_empty(),
        "golden files differ (run with BLESS=1 to accept): {failed:?}"
    );
}

fn errors(text: &str) -> Vec<(Kind, u32, u32, String)> {
    match parse_text(text) {
        Ok(p) => panic!("expected errors, got {:?}", p.services),
        Err(e) => e
            .errors
            .iter()
            .map(|f| (f.kind, f.line, f.column, f.message.clone()))
            .collect(),
    }
}

fn ok(text: &str) -> Parsed {
    match parse_text(text) {
        Ok(p) => p,
        Err(e) => panic!("{}", render(&e.errors, RenderStyle::PLAIN)),
    }
}

#[test]
fn the_port_value_is_pointed_at_exactly() {
    let e = errors(
        "services:\n  web:\n    image: busybox\n    ports:\n      - 70000\n      - \"8080:70001\"\n",
    );
    assert_eq!(e.len(), 2, "{e:?}");
    assert_eq!((e[0].0, e[0].1, e[0].2), (Kind::Port, 5, 9));
    assert_eq!((e[1].0, e[1].1, e[1].2), (Kind::Port, 6, 15));
    assert!(e[0].3.contains("70000"), "{}", e[0].3);
}

#[test]
fn interpolation_in_every_string() {
    let p = ok(r#"
services:
  web:
    image: "busybox:${TAG}"
    command: ["echo", "$FROM_ENV", "$$HOME", "${NOPE:-fallback}", "${EMPTY-kept}"]
    ports: ["${WEB_PORT}:80"]
    deploy:
      replicas: ${REPLICAS}
"#);
    let web = &p.services[0];
    assert_eq!(web.image, "busybox:1.2");
    assert_eq!(
        web.command.as_deref(),
        Some(&["echo", "from the environment", "$HOME", "fallback", ""].map(String::from)[..])
    );
    assert_eq!(web.ports[0].published, Some(PortRange::one(8080)));
    assert_eq!(web.deploy.mode, Mode::Replicated { replicas: 3 });
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
}

#[test]
fn an_unset_variable_is_empty_with_a_warning_naming_it() {
    let p =
        ok("services:\n  web:\n    image: busybox\n    command: echo ${UNSET_ONE} $UNSET_ONE\n");
    assert_eq!(
        p.services[0].command.as_deref(),
        Some(&["echo".to_owned()][..])
    );
    assert_eq!(p.warnings.len(), 1, "one warning per variable");
    let w = &p.warnings[0];
    assert_eq!((w.kind, w.line, w.column), (Kind::Interpolation, 4, 21));
    assert!(w.message.contains("UNSET_ONE"));
    assert_eq!(w.key, "services.web.command");
}

#[test]
fn a_required_variable_is_an_error() {
    let e = errors(
        "services:\n  db:\n    image: postgres\n    environment:\n      POSTGRES_PASSWORD: ${DB_PASSWORD:?set the database password}\n",
    );
    assert_eq!(e.len(), 1);
    assert_eq!((e[0].0, e[0].1), (Kind::Interpolation, 5));
    assert!(e[0].3.contains("set the database password"), "{}", e[0].3);
    let e = errors("services:\n  web:\n    image: busybox\n    command: echo $1\n");
    assert_eq!(e[0].0, Kind::Interpolation);
}

#[test]
fn short_and_long_ports() {
    let p = ok(r#"
services:
  web:
    image: busybox
    ports:
      - "80"
      - "8080:80"
      - "127.0.0.1:8081:81"
      - "8000-8002:9000-9002"
      - "53:53/udp"
      - 82
      - target: 83
        published: "8083"
        protocol: udp
        mode: host
      - target: 84
        published: 8084
        host_ip: "::1"
        mode: ingress
"#);
    let ports = &p.services[0].ports;
    assert_eq!(ports.len(), 8);
    assert_eq!(p.warnings.len(), 2, "two host addresses: {:?}", p.warnings);
    assert_eq!(
        ports[3].published,
        Some(PortRange {
            start: 8000,
            end: 8002
        })
    );
    assert_eq!(ports[5].target, PortRange::one(82));
    assert_eq!(ports[6].protocol, Protocol::Udp);
    assert_eq!(ports[7].protocol, Protocol::Tcp);
    assert_eq!(ports[6].mode, PortMode::Host);
    assert_eq!(ports[7].mode, PortMode::Ingress);
    // Compose's default is the routing mesh.
    assert_eq!(ports[0].mode, PortMode::Ingress);
    let spec = to_spec(&p.services[0]);
    let pairs: Vec<(u32, u32, i32)> = spec
        .ports
        .iter()
        .map(|p| (p.published, p.target, p.protocol))
        .collect();
    assert_eq!(
        pairs,
        [
            (0, 80, 1),
            (8080, 80, 1),
            (8081, 81, 1),
            (8000, 9000, 1),
            (8001, 9001, 1),
            (8002, 9002, 1),
            (53, 53, 2),
            (0, 82, 1),
            (8083, 83, 2),
            (8084, 84, 1),
        ]
    );
    // Unequal range lengths are refused (the long syntax `84` and `8084-8085`).
    let e = errors(
        "services:\n  web:\n    image: busybox\n    ports:\n      - target: 84\n        published: 8084-8085\n",
    );
    assert_eq!(e[0].0, Kind::Port);
}

#[test]
fn durations_and_sizes_reach_the_spec() {
    let p = ok(r#"
services:
  web:
    image: busybox
    deploy:
      resources:
        limits: {cpus: "1.5", memory: 1.5g}
        reservations: {cpus: 0.25, memory: 512m}
      restart_policy: {condition: on-failure, delay: 1m30s, max_attempts: 3, window: 500ms}
"#);
    let spec = to_spec(&p.services[0]);
    let r = spec.resources.expect("resources");
    assert_eq!((r.cpus_limit, r.memory_limit), (1.5, 3 << 29));
    assert_eq!((r.cpus_reserved, r.memory_reserved), (0.25, 512 << 20));
    let rp = spec.restart.expect("restart");
    assert_eq!(
        (rp.delay_ms, rp.max_attempts, rp.window_ms),
        (90_000, 3, 500)
    );
    assert_eq!(rp.condition, 2);
}

#[test]
fn later_files_override_earlier_ones_key_by_key() {
    let a = Source::new(
        "a.yaml",
        ".",
        "services:\n  web:\n    image: web:1\n    ports: [\"80:80\"]\n  db:\n    image: db:1\n",
    );
    let b = Source::new(
        "b.yaml",
        ".",
        "services:\n  web:\n    image: web:2\n  cache:\n    image: redis\n",
    );
    let p = parse(&[a, b], &env(), &Fs).expect("parses");
    let names: Vec<&str> = p.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["web", "db", "cache"]);
    assert_eq!(p.services[0].image, "web:2");
    assert_eq!(p.services[0].ports.len(), 1, "ports kept from a.yaml");
}

#[test]
fn errors_name_their_own_file_when_several_are_given() {
    let a = Source::new(
        "a.yaml",
        ".",
        "services:\n  web:\n    image: web:1\n    links: [db]\n",
    );
    let b = Source::new(
        "b.yaml",
        ".",
        "services:\n  db:\n    image: db\n    deploy:\n      replicas: -1\n",
    );
    let e = parse(&[a, b], &env(), &Fs).expect_err("b is wrong");
    assert_eq!(e.errors.len(), 1);
    assert_eq!((e.errors[0].file.as_str(), e.errors[0].line), ("b.yaml", 5));
}

#[test]
fn env_file_then_environment() {
    let files: BTreeMap<PathBuf, String> = [(
        PathBuf::from("/app/web.env"),
        "# defaults\nA=1\nB=\"two words\"\nC=${TAG}\n".to_owned(),
    )]
    .into_iter()
    .collect();
    let src = Source::new(
        "/app/compose.yaml",
        "/app",
        "services:\n  web:\n    image: busybox\n    env_file: web.env\n    environment:\n      A: override\n      D:\n      FROM_ENV:\n",
    );
    let p = parse(&[src], &env(), &files).expect("parses");
    let spec = to_spec(&p.services[0]);
    assert_eq!(
        spec.env,
        [
            "A=override",
            "B=two words",
            "C=1.2",
            "FROM_ENV=from the environment"
        ]
    );
    assert_eq!(p.warnings.len(), 1, "D is not set: {:?}", p.warnings);
    assert!(p.warnings[0].message.contains("`D`"));
    // A missing env file is an error, unless `required: false`.
    let src = Source::new(
        "c.yaml",
        "/app",
        "services:\n  web:\n    image: busybox\n    env_file:\n      - nope.env\n      - path: also-nope.env\n        required: false\n",
    );
    let e = parse(&[src], &env(), &files).expect_err("missing");
    assert_eq!(e.errors.len(), 1);
    assert_eq!(e.errors[0].line, 5);
}

#[test]
fn every_error_of_a_file_is_reported_at_once() {
    let e = errors(
        r#"
services:
  web:
    image: busybox
    ports: ["99999"]
    stop_grace_period: ten
    deploy:
      replcas: 2
      resources:
        limits: {memory: lots}
  Bad_Name:
    image: x
  nothing:
    command: true
"#,
    );
    let kinds: Vec<Kind> = e.iter().map(|x| x.0).collect();
    assert_eq!(
        kinds,
        [
            Kind::Port,
            Kind::Duration,
            Kind::UnknownKey,
            Kind::Size,
            Kind::ServiceName,
            Kind::Missing
        ]
    );
}

#[test]
fn warnings_name_file_line_column_and_key() {
    let p =
        ok("version: \"3.8\"\nservices:\n  web:\n    image: busybox\n    container_name: web\n");
    let w: Vec<(&str, u32, u32, &str, Severity)> = p
        .warnings
        .iter()
        .map(|w| {
            (
                w.file.as_str(),
                w.line,
                w.column,
                w.key.as_str(),
                w.severity,
            )
        })
        .collect();
    assert_eq!(
        w,
        [
            ("test.yaml", 1, 1, "version", Severity::Warning),
            (
                "test.yaml",
                5,
                5,
                "services.web.container_name",
                Severity::Warning
            ),
        ]
    );
}

#[test]
fn nothing_to_apply_is_an_error() {
    assert_eq!(errors("")[0].0, Kind::Missing);
    assert_eq!(errors("services: {}\n")[0].0, Kind::Missing);
    assert_eq!(errors("name: x\n")[0].0, Kind::Missing);
    assert_eq!(errors("- a\n- b\n")[0].0, Kind::Type);
    assert!(parse(&[], &env(), &Fs).is_err());
}

/// A small deterministic generator (xorshift), so the test needs no crate and repeats.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

/// Parses and renders whatever comes out: neither may panic.
fn parse_and_render(text: &str) {
    match parse_text(text) {
        Ok(p) => {
            let _ = render(&p.warnings, RenderStyle::PLAIN);
            for s in &p.services {
                let _ = to_spec(s);
            }
        }
        Err(e) => {
            let _ = render(&e.errors, RenderStyle::PLAIN);
            let _ = render(
                &e.warnings,
                RenderStyle {
                    color: true,
                    unicode: false,
                    width: 20,
                },
            );
            let _ = e.to_string();
        }
    }
}

#[test]
fn garbage_never_panics() {
    let pieces = [
        "services:",
        "\n",
        "  ",
        "    ",
        "web:",
        "image:",
        " busybox",
        "ports:",
        "- ",
        "\"",
        "'",
        "{",
        "}",
        "[",
        "]",
        ":",
        ",",
        "&a",
        "*a",
        "<<: *a",
        "${",
        "$",
        "}",
        "70000",
        "-1",
        "1e999",
        "deploy:",
        "replicas:",
        "mode: global",
        "placement:",
        "preferences:",
        "- spread:",
        "healthcheck:",
        "test:",
        "[\"CMD\"]",
        "links:",
        "depends_on:",
        "x:y:z",
        "é",
        "\t",
        "#",
        "!!binary",
        "!tag",
        "? ",
        "|",
        ">",
        "---",
        "...",
        "~",
        "null",
        "true",
        "0x1F",
        "..",
        "env_file:",
        "environment:",
        "- A",
        "=",
        "volumes:",
        "/data",
        "::",
        "[::1]",
        "/udp",
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..3000 {
        let n = (rng.next() % 40) as usize;
        let text: String = (0..n).map(|_| rng.pick(&pieces)).collect();
        parse_and_render(&text);
    }
    // Random bytes, as text.
    for _ in 0..500 {
        let n = (rng.next() % 200) as usize;
        let bytes: Vec<u8> = (0..n).map(|_| (rng.next() % 256) as u8).collect();
        parse_and_render(&String::from_utf8_lossy(&bytes));
    }
    // Mutations of a valid file: every prefix, and every single-byte change to a few
    // characters.
    let valid = std::fs::read_to_string(fixtures().join("voting-app.yaml")).expect("fixture");
    for cut in (0..valid.len())
        .filter(|i| valid.is_char_boundary(*i))
        .step_by(7)
    {
        parse_and_render(&valid[..cut]);
    }
    for i in (0..valid.len()).step_by(11) {
        for c in [b':', b'-', b' ', b'"', b'\n', b'$', b'{'] {
            let mut b = valid.as_bytes().to_vec();
            b[i] = c;
            parse_and_render(&String::from_utf8_lossy(&b));
        }
    }
    // Deep nesting and an alias bomb.
    parse_and_render(&format!(
        "services: {}{}",
        "[".repeat(5000),
        "]".repeat(5000)
    ));
    let bomb = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\ng: [*f, *f, *f, *f, *f, *f, *f, *f, *f]\nservices: {}\n";
    parse_and_render(bomb);
}

#[test]
fn keys_left_empty_count_as_not_given() {
    let p = ok(
        "services:\n  web:\n    image: busybox\n    ports:\n    environment:\n    command:\n    deploy:\n",
    );
    assert!(p.services[0].ports.is_empty());
    assert_eq!(p.services[0].command, None);
    assert_eq!(errors("services:\n  web:\n    image:\n")[0].0, Kind::Type);
}

#[test]
fn a_restart_policy_without_delay_waits_five_seconds_as_in_swarm() {
    let p = ok(
        "services:\n  web:\n    image: busybox\n    deploy:\n      restart_policy:\n        condition: none\n",
    );
    let r = to_spec(&p.services[0]).restart.expect("a policy");
    assert_eq!(
        (r.condition, r.delay_ms, r.max_attempts, r.window_ms),
        (1, 5_000, 0, 0)
    );
}
