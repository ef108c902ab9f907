//! `berth-up-bench`: the embedded default (issue 6), timed. In a throwaway network namespace,
//! data directory and cgroup parent (`berth_tests::local::Local`), with the `busybox:demo`
//! image of `examples/build-busybox-image.sh` imported once:
//!
//! * `berth up` on an initialised machine (after a `berth down` that kept the data), to the
//!   controller elected and the node registered and ready;
//! * then `berth apply -f examples/hello/compose.yaml` until the page answers on port 8080.
//!
//! Each round ends with `berth rm hello` and `berth down`. Medians of `--runs` rounds (5).
//!
//! ```text
//! cargo build --release --bins && ./target/release/berth-up-bench [--runs 5]
//! ```

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use berth_tests::local::{Local, show};
use berth_tests::median;

/// Whether hello's page answers on port 8080 (from inside the namespace).
fn answers(local: &Local) -> bool {
    local.ns.run(|| {
        let addr: SocketAddr = "127.0.0.1:8080".parse().expect("address");
        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        if s.write_all(b"GET / HTTP/1.0\r\n\r\n").is_err() {
            return false;
        }
        let mut body = String::new();
        let _ = s.read_to_string(&mut body);
        body.contains("hello from berth")
    })
}

fn main() -> anyhow::Result<()> {
    let runs: usize = std::env::args()
        .skip_while(|a| a != "--runs")
        .nth(1)
        .map_or(Ok(5), |n| n.parse())
        .context("--runs N")?;
    if !berth_tests::require_root_and_busybox("berth-up-bench") {
        bail!("needs root and busybox-static");
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let hello = root.join("examples/hello/compose.yaml");
    let hello = hello.to_str().context("utf8 path")?;
    let local = Local::new()?;

    let started = Instant::now();
    local.ok(&["up"]);
    let first_up = started.elapsed().as_secs_f64();
    let rootfs = local.data.path().join("rootfs");
    let out = Command::new(root.join("examples/build-busybox-image.sh"))
        .arg(&rootfs)
        .output()?;
    if !out.status.success() {
        bail!("build-busybox-image.sh: {}", show(&out));
    }
    local.agent(&[
        "image",
        "import-rootfs",
        rootfs.to_str().context("utf8 path")?,
        "busybox:demo",
        "--cmd",
        "sh",
    ]);
    local.ok(&["down"]);

    let (mut ups, mut applies) = (Vec::new(), Vec::new());
    for round in 1..=runs {
        let t = Instant::now();
        local.ok(&["up"]);
        let up = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let o = local.cli(&["apply", "-f", hello]);
        if !o.status.success() {
            bail!("apply: {}", show(&o));
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while !answers(&local) {
            if Instant::now() > deadline {
                bail!("hello never answered on port 8080");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let apply = t.elapsed().as_secs_f64();
        eprintln!("round {round}: up {up:.3} s, apply until answering {apply:.3} s");
        ups.push(up);
        applies.push(apply);
        let o = local.cli(&["rm", "hello"]);
        if !o.status.success() {
            bail!("rm: {}", show(&o));
        }
        local.wait("hello's container gone", || local.running() == 0);
        local.ok(&["down"]);
    }
    let range = |v: &[f64]| {
        let min = v.iter().copied().fold(f64::INFINITY, f64::min);
        let max = v.iter().copied().fold(0.0, f64::max);
        format!("{min:.3}–{max:.3} s")
    };
    println!("### berth up and hello (single-node cluster, throwaway namespace)\n");
    println!("| step | median | range ({runs} runs) |\n|---|---|---|");
    println!(
        "| `berth up`, first time (creates the cluster) | {first_up:.3} s | — |\n\
         | `berth up` on an initialised machine | {:.3} s | {} |\n\
         | `berth apply -f examples/hello/compose.yaml` until it answers | {:.3} s | {} |",
        median(ups.clone()),
        range(&ups),
        median(applies.clone()),
        range(&applies)
    );
    Ok(())
}
