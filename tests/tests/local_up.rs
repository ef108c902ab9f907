//! `berth up` / `berth down`, the embedded single-node cluster, for real: the real `berth`,
//! `berth-controller` and `berth-agent` binaries, run as root inside a throwaway network
//! namespace, with a temporary data directory and a test-only cgroup parent.
//!
//! up starts a controller and a node and is ready; up again starts nothing; a service
//! applied runs its containers; down removes them and every trace on the host (bridge,
//! rules, cgroups, processes) but keeps the data; up brings the service back; down --purge
//! removes the data.

use std::path::PathBuf;

use berth_tests::local::{Local, alive, iptables_berth, show};

#[test]
fn up_is_ready_and_idempotent_down_leaves_nothing_and_keeps_the_services() {
    let test = "up_is_ready_and_idempotent_down_leaves_nothing_and_keeps_the_services";
    if !berth_tests::require_root_and_busybox(test) {
        return;
    }
    let local = Local::new().expect("a throwaway place");

    let out = local.ok(&["up"]);
    assert!(
        out.contains("created a cluster") && out.contains("berth is up (started"),
        "{out}"
    );
    let pids = local.pids();
    assert_eq!(pids.len(), 2, "two daemons: {pids:?}");
    let out = local.ok(&["up"]);
    assert!(
        out.contains("already up") && !out.contains("context"),
        "{out}"
    );
    assert_eq!(local.pids(), pids, "nothing restarted");

    // An image on the node, and a service of two replicas.
    let rootfs = local.data.path().join("rootfs");
    berth_tests::busybox_rootfs(&rootfs).expect("busybox rootfs");
    local.agent(&[
        "image",
        "import-rootfs",
        rootfs.to_str().unwrap(),
        "busybox:1",
        "--cmd",
        "sh",
    ]);
    // The context `up` wrote reaches the cluster: apply a file and wait for convergence.
    let file = local.config.path().join("sleeper.yaml");
    std::fs::write(
        &file,
        "services:\n  sleeper:\n    image: busybox:1\n    command: sleep 1000\n    deploy:\n      replicas: 2\n",
    )
    .unwrap();
    let o = local.cli(&["apply", "-f", file.to_str().unwrap(), "--timeout", "30s"]);
    assert!(o.status.success(), "apply: {}", show(&o));
    let ls = local.cli(&["ls"]);
    assert!(
        String::from_utf8_lossy(&ls.stdout).contains("sleeper"),
        "{}",
        show(&ls)
    );
    local.wait("2 containers running", || local.running() == 2);
    assert!(local.ns.links().contains(&"berth0".to_string()));
    assert!(!iptables_berth(&local.ns).is_empty());

    let out = local.ok(&["down"]);
    assert!(
        out.contains("2 container(s) removed") && out.contains("data kept"),
        "{out}"
    );
    assert!(pids.iter().all(|p| !alive(*p)), "daemons stopped");
    assert!(local.pids().is_empty(), "pid files removed");
    assert_eq!(local.agent(&["ps", "-a", "-q"]).trim(), "");
    assert!(
        !local.ns.links().contains(&"berth0".to_string()),
        "{:?}",
        local.ns.links()
    );
    assert_eq!(iptables_berth(&local.ns), Vec::<String>::new());
    let cgroups: Vec<PathBuf> = berth_tests::cgroup_dirs(&local.cgroup_parent)
        .into_iter()
        .filter(|d| d.exists())
        .collect();
    assert_eq!(cgroups, Vec::<PathBuf>::new());
    assert!(local.data.path().join("controller/cluster.json").exists());

    // The data kept: up brings the service back.
    let out = local.ok(&["up"]);
    assert!(
        out.contains("berth is up (started") && !out.contains("created"),
        "{out}"
    );
    local.wait("the service back", || local.running() == 2);

    let out = local.ok(&["down", "--purge"]);
    assert!(out.contains("removed"), "{out}");
    assert!(!local.data.path().join("controller").exists());
    // The context that pointed at the removed certificates is gone too.
    assert!(out.contains("context `default` removed"), "{out}");
    let config = std::fs::read_to_string(local.config.path().join("config")).unwrap_or_default();
    assert!(!config.contains("default:"), "{config}");
    assert_eq!(iptables_berth(&local.ns), Vec::<String>::new());
}

#[test]
fn up_refuses_without_its_daemons_and_names_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    // A copy of `berth` alone: its daemons are not next to it.
    let lonely = dir.path().join("berth");
    std::fs::copy(berth_tests::target_dir().join("berth"), &lonely).unwrap();
    let o = std::process::Command::new(&lonely)
        .args(["up", "--data-dir"])
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    if berth_tests::require_root("up_refuses_without_its_daemons_and_names_what_to_do") {
        assert!(
            err.contains("berth-controller not found") && err.contains("cargo build"),
            "{err}"
        );
    }
    assert!(!err.contains("panicked"), "{err}");
}
