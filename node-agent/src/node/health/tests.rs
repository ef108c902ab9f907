//! The health state machine against Docker's rules, and the probes against real processes
//! and loopback servers (no privileges needed).

use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::time::{Duration, Instant};

use super::probe::{Target, run};
use super::{Health, HealthCheck, HealthCheckError, MAX_OUTPUT, Outcome, Probe, Tracker};

fn check(retries: u32, start_period: u64) -> HealthCheck {
    HealthCheck {
        probe: Probe::Tcp { port: 80 },
        interval: Duration::from_secs(10),
        timeout: Duration::from_secs(2),
        retries,
        start_period: Duration::from_secs(start_period),
        start_interval: Duration::from_secs(1),
    }
}

fn result(ok: bool, at: Instant) -> Outcome {
    Outcome::new(ok, "", at, Duration::from_millis(100))
}

#[test]
fn retries_failures_in_a_row_make_it_unhealthy_and_one_success_heals() {
    let t0 = Instant::now();
    let mut t = Tracker::new(check(3, 0), t0);
    assert_eq!(t.health(), Health::Starting);
    assert_eq!(t.next_due(), t0 + Duration::from_secs(10));
    let s = |n: u64| t0 + Duration::from_secs(n);
    assert_eq!(t.record(result(false, s(10))), None);
    assert_eq!(t.record(result(false, s(20))), None);
    assert_eq!(t.failing_streak(), 2);
    assert_eq!(t.record(result(false, s(30))), Some(Health::Unhealthy));
    assert_eq!(t.record(result(false, s(40))), None, "no change, no report");
    assert_eq!(t.record(result(true, s(50))), Some(Health::Healthy));
    assert_eq!(t.failing_streak(), 0);
    // A failure between successes does not reset health until retries are reached.
    assert_eq!(t.record(result(false, s(60))), None);
    assert_eq!(t.record(result(true, s(70))), None);
    assert_eq!(t.failing_streak(), 0);
    // The next probe is one interval after the last finished.
    assert_eq!(
        t.next_due(),
        s(70) + Duration::from_millis(100) + Duration::from_secs(10)
    );
}

#[test]
fn the_start_period_forgives_failures_and_probes_faster_until_a_success() {
    let t0 = Instant::now();
    let mut t = Tracker::new(check(1, 30), t0);
    // During the start period: every start_interval, failures do not count.
    assert_eq!(t.next_due(), t0 + Duration::from_secs(1));
    for n in 1..=5 {
        let at = t0 + Duration::from_secs(n);
        assert!(t.in_start_period(at));
        assert_eq!(t.record(result(false, at)), None);
        assert_eq!(t.health(), Health::Starting);
        assert_eq!(
            t.next_due(),
            at + Duration::from_millis(100) + Duration::from_secs(1)
        );
    }
    assert_eq!(t.failing_streak(), 0);
    // A success counts at once, and the interval is the normal one from then on.
    let at = t0 + Duration::from_secs(6);
    assert_eq!(t.record(result(true, at)), Some(Health::Healthy));
    assert_eq!(
        t.next_due(),
        at + Duration::from_millis(100) + Duration::from_secs(10)
    );
    // A failure in the start period after a success still does not count.
    assert_eq!(t.record(result(false, t0 + Duration::from_secs(20))), None);
    assert_eq!(t.health(), Health::Healthy);
    // After it, one failure (retries 1) is enough.
    assert_eq!(
        t.record(result(false, t0 + Duration::from_secs(40))),
        Some(Health::Unhealthy)
    );
}

#[test]
fn only_the_last_results_are_kept_and_output_is_bounded() {
    let t0 = Instant::now();
    let mut t = Tracker::new(check(3, 0), t0);
    for n in 0..8u64 {
        t.record(Outcome::new(
            true,
            format!("run {n}"),
            t0 + Duration::from_secs(n),
            Duration::ZERO,
        ));
    }
    let kept: Vec<&str> = t.results().map(|r| r.output.as_str()).collect();
    assert_eq!(kept, ["run 3", "run 4", "run 5", "run 6", "run 7"]);
    let long = "é".repeat(MAX_OUTPUT);
    let o = Outcome::new(false, long, t0, Duration::ZERO);
    assert!(o.output.len() <= MAX_OUTPUT);
    assert!(o.output.len() > MAX_OUTPUT - 2);
}

#[test]
fn invalid_checks_are_refused_with_what_is_wrong() {
    let ok = check(3, 0);
    assert_eq!(ok.validate(), Ok(()));
    let with = |f: &dyn Fn(&mut HealthCheck)| {
        let mut c = ok.clone();
        f(&mut c);
        c.validate().unwrap_err()
    };
    assert_eq!(
        with(&|c| c.interval = Duration::ZERO),
        HealthCheckError::Zero { field: "interval" }
    );
    assert_eq!(
        with(&|c| c.timeout = Duration::ZERO),
        HealthCheckError::Zero { field: "timeout" }
    );
    assert_eq!(with(&|c| c.retries = 0), HealthCheckError::NoRetries);
    assert_eq!(
        with(&|c| c.probe = Probe::Cmd(vec![])),
        HealthCheckError::EmptyCommand
    );
    assert_eq!(
        with(&|c| c.probe = Probe::Shell(" ".into())),
        HealthCheckError::EmptyCommand
    );
    assert_eq!(
        with(&|c| c.probe = Probe::Tcp { port: 0 }),
        HealthCheckError::Port
    );
    let e = with(&|c| {
        c.probe = Probe::Http {
            port: 80,
            path: "health".into(),
        }
    });
    assert_eq!(
        e.to_string(),
        "healthcheck HTTP path \"health\" must start with /"
    );
    assert_eq!(
        HealthCheck::new(Probe::Tcp { port: 1 }).validate(),
        Ok(()),
        "Docker's defaults are valid"
    );
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Runs commands directly (`env -- <command>`), standing in for `berth-agent exec`.
fn direct() -> Target {
    Target {
        address: None,
        exec: vec![OsString::from("env"), OsString::from("--")],
    }
}

#[test]
fn command_probes_pass_on_exit_0_and_report_output_or_the_code() {
    let rt = rt();
    let t = direct();
    let timeout = Duration::from_secs(5);
    let ok = rt.block_on(run(&Probe::Shell("echo all good".into()), &t, timeout));
    assert!(ok.ok, "{ok:?}");
    assert_eq!(ok.output, "all good\n");
    let bad = rt.block_on(run(
        &Probe::Shell("echo broken >&2; exit 3".into()),
        &t,
        timeout,
    ));
    assert!(!bad.ok);
    assert_eq!(bad.output, "broken\n");
    let silent = rt.block_on(run(&Probe::Cmd(vec!["false".into()]), &t, timeout));
    assert!(!silent.ok);
    assert_eq!(silent.output, "exit code 1");
    let missing = rt.block_on(run(
        &Probe::Cmd(vec!["/nonexistent/check".into()]),
        &Target::default(),
        timeout,
    ));
    assert!(!missing.ok);
    assert_eq!(missing.output, "no way to run a command in the container");
}

#[test]
fn a_probe_over_its_timeout_fails_and_its_process_is_killed() {
    let rt = rt();
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("finished");
    let script = format!("sleep 2; touch {}", marker.display());
    let started = Instant::now();
    let o = rt.block_on(run(
        &Probe::Shell(script),
        &direct(),
        Duration::from_millis(300),
    ));
    assert!(!o.ok);
    assert!(o.output.contains("exceeded its timeout"), "{}", o.output);
    assert!(started.elapsed() < Duration::from_secs(2));
    std::thread::sleep(Duration::from_millis(2500));
    assert!(!marker.exists(), "the timed-out check kept running");
}

/// A one-connection-at-a-time HTTP server on loopback answering `status` to every request;
/// returns its port. It serves `n` requests, then ends.
fn http_server(status: &'static str, n: usize) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for c in l.incoming().take(n) {
            let mut c = c.unwrap();
            let mut buf = [0u8; 1024];
            let mut got = Vec::new();
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                let k = c.read(&mut buf).unwrap();
                if k == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..k]);
            }
            let text = String::from_utf8_lossy(&got);
            assert!(text.starts_with("GET /health HTTP/1.1\r\n"), "{text}");
            let _ = write!(
                c,
                "HTTP/1.1 {status}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
            );
        }
    });
    port
}

#[test]
fn http_probes_pass_on_2xx_and_3xx_only() {
    let rt = rt();
    let target = Target {
        address: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        exec: vec![],
    };
    let timeout = Duration::from_secs(5);
    for (status, healthy) in [
        ("200 OK", true),
        ("302 Found", true),
        ("404 Not Found", false),
        ("503 Service Unavailable", false),
    ] {
        let port = http_server(status, 1);
        let probe = Probe::Http {
            port,
            path: "/health".into(),
        };
        let o = rt.block_on(run(&probe, &target, timeout));
        assert_eq!(o.ok, healthy, "{status}: {o:?}");
        assert!(
            o.output.contains(status.split(' ').next().unwrap()),
            "{}",
            o.output
        );
    }
    // Nothing listening: refused at once.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let o = rt.block_on(run(
        &Probe::Http {
            port,
            path: "/health".into(),
        },
        &target,
        timeout,
    ));
    assert!(!o.ok);
    assert!(o.output.contains("cannot connect"), "{}", o.output);
    // A server that accepts and never answers: the timeout.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let o = rt.block_on(run(
        &Probe::Http {
            port,
            path: "/health".into(),
        },
        &target,
        Duration::from_millis(300),
    ));
    assert!(!o.ok);
    assert!(o.output.contains("exceeded its timeout"), "{}", o.output);
}

#[test]
fn tcp_probes_pass_when_the_port_accepts() {
    let rt = rt();
    let open = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = open.local_addr().unwrap().port();
    let target = Target {
        address: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        exec: vec![],
    };
    let o = rt.block_on(run(&Probe::Tcp { port }, &target, Duration::from_secs(2)));
    assert!(o.ok, "{o:?}");
    drop(open);
    let o = rt.block_on(run(&Probe::Tcp { port }, &target, Duration::from_secs(2)));
    assert!(!o.ok);
    let o = rt.block_on(run(
        &Probe::Tcp { port },
        &Target::default(),
        Duration::from_secs(2),
    ));
    assert_eq!(o.output, "the task has no address to probe");
}
