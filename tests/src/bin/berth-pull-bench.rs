//! `berth-pull-bench`: pulling a 5-layer image from a registry when 4 of its layers are
//! already in the node's store, against pulling it whole (issue 8). A real `docker-registry`
//! (Distribution v2, Debian's package) runs on a host of the harness; two images share 4
//! layers and differ in the fifth (each layer `--layer-mib` MiB of incompressible data);
//! `berth-agent image pull` fetches them: the first image into an empty store (a full pull),
//! then the second into that store (only the fifth layer is fetched). Each run uses fresh
//! stores; the time is the `image pull` command's, start to exit.
//!
//! ```text
//! cargo build --release --workspace --bins && ./target/release/berth-pull-bench [--runs 5] [--layer-mib 8]
//! ```

use std::time::Instant;

use berth_tests::TestAgent;
use berth_tests::cluster::Cluster;
use berth_tests::images::{Entry, layer_tar, write_docker_save};
use berth_tests::median;

fn arg(name: &str) -> Option<String> {
    std::env::args().skip_while(|a| a != name).nth(1)
}

/// `mib` MiB that do not compress (xorshift), seeded by `seed`.
fn noise(seed: u64, mib: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(mib << 20);
    while out.len() < mib << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

fn layer(seed: u64, mib: usize) -> Vec<u8> {
    layer_tar(&[Entry::File(format!("data/{seed}"), noise(seed, mib), 0o644)])
}

fn agent(cluster: &Cluster) -> TestAgent {
    TestAgent::new(
        berth_tests::target_dir().join("berth-agent"),
        berth_tests::target_dir().join("berth-monitor"),
    )
    .in_netns(cluster.host(0).ns.clone())
}

fn timed_pull(a: &TestAgent, reference: &str) -> f64 {
    let started = Instant::now();
    a.ok(["image", "pull", reference, "--insecure"]);
    started.elapsed().as_secs_f64()
}

fn main() {
    let runs: usize = arg("--runs").and_then(|v| v.parse().ok()).unwrap_or(5);
    let mib: usize = arg("--layer-mib").and_then(|v| v.parse().ok()).unwrap_or(8);
    assert!(
        berth_tests::registry::available("berth-pull-bench"),
        "needs the registry"
    );
    let cluster = Cluster::new(1);
    let registry = berth_tests::registry::start(cluster.host(0), false);

    // Two images: four shared layers, a fifth of their own; pushed once.
    let shared: Vec<Vec<u8>> = (1..=4).map(|s| layer(s, mib)).collect();
    let builder = agent(&cluster);
    for (name, seed) in [("a", 5), ("b", 6)] {
        let mut layers = shared.clone();
        layers.push(layer(seed, mib));
        let archive = builder.tmp.path().join(format!("{name}.tar"));
        write_docker_save(
            &archive,
            &format!("bench:{name}"),
            &layers,
            serde_json::json!({"Cmd": ["true"]}),
        );
        builder.ok(["image", "import", archive.to_str().expect("utf8")]);
        builder.ok([
            "image",
            "push",
            &format!("bench:{name}"),
            &format!("{registry}/bench:{name}"),
            "--insecure",
        ]);
    }
    let (mut full, mut partial) = (Vec::new(), Vec::new());
    for run in 1..=runs {
        let node = agent(&cluster);
        let f = timed_pull(&node, &format!("{registry}/bench:a"));
        let p = timed_pull(&node, &format!("{registry}/bench:b"));
        eprintln!("run {run}: full pull {f:.3} s, 4 of 5 layers cached {p:.3} s");
        full.push(f);
        partial.push(p);
    }
    let (f, p) = (median(full), median(partial));
    println!(
        "| pull of a 5-layer image ({} MiB) | median of {runs} |\n|---|---|",
        5 * mib
    );
    println!("| full (empty store) | {f:.3} s |");
    println!(
        "| 4 of 5 layers cached | {p:.3} s ({:.0} % of the full pull) |",
        100.0 * p / f
    );
}
