//! Shared by the end-to-end test files of `berth-agent`.
#![allow(dead_code)]

use berth_tests::TestAgent;

/// A test agent using this package's freshly built binaries.
pub fn agent() -> TestAgent {
    TestAgent::new(
        env!("CARGO_BIN_EXE_berth-agent"),
        env!("CARGO_BIN_EXE_berth-monitor"),
    )
}

/// A test agent with a busybox image tagged `bb`; `None` (after a loud SKIPPED) when the
/// test cannot run here.
pub fn agent_with_busybox(test: &str) -> Option<TestAgent> {
    if !berth_tests::require_root_and_busybox(test) {
        return None;
    }
    let a = agent();
    a.busybox_image("bb");
    Some(a)
}

/// Stdout and stderr of an output, for assertion messages.
pub fn show(o: &std::process::Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `iptables-save` in `ns`, without counters and comments (which change with traffic and
/// time), for before/after comparisons.
pub fn iptables_rules(ns: &berth_tests::netns::NetNs) -> String {
    let out = ns
        .command("iptables-save")
        .output()
        .expect("run iptables-save");
    assert!(out.status.success(), "iptables-save: {}", show(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| match l.find(" [") {
            Some(i) if l.starts_with(':') => l[..i].to_string(),
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The names of the links in `ns`.
pub fn links_in(ns: &berth_tests::netns::NetNs) -> Vec<String> {
    ns.links()
}
