//! Wire-level checks of the generated contract.

use std::collections::HashMap;

use prost::Message;

use crate::v1::{
    ContainerSpec, ContainerState, ContainerStatus, Empty, ExitReason, Mount, MountKind,
    PortMapping, Protocol, Resources, RestartCondition, RestartPolicy, VersionInfo,
};
use crate::{API_VERSION, version_info};

fn round_trip<M: Message + Default>(message: &M) -> M {
    let bytes = message.encode_to_vec();
    M::decode(bytes.as_slice()).expect("a message this build encoded decodes")
}

fn full_spec() -> ContainerSpec {
    ContainerSpec {
        image: "registry.example/web:1.2".to_owned(),
        entrypoint: vec!["/bin/web".to_owned()],
        command: vec!["--port".to_owned(), "8080".to_owned()],
        env: HashMap::from([("MODE".to_owned(), "prod".to_owned())]),
        working_dir: "/srv".to_owned(),
        user: "1000:1000".to_owned(),
        hostname: "web-1".to_owned(),
        resources: Some(Resources {
            memory_bytes: 256 << 20,
            cpus: 1.5,
            cpu_shares: 512,
            pids_max: 100,
        }),
        mounts: vec![
            Mount {
                source: "/etc/web".to_owned(),
                target: "/etc/web".to_owned(),
                read_only: true,
                kind: MountKind::Bind.into(),
            },
            Mount {
                source: "web-data".to_owned(),
                target: "/var/lib/web".to_owned(),
                read_only: false,
                kind: MountKind::Volume.into(),
            },
        ],
        ports: vec![PortMapping {
            host_ip: "0.0.0.0".to_owned(),
            host_port: 80,
            container_port: 8080,
            protocol: Protocol::Tcp.into(),
        }],
        restart: Some(RestartPolicy {
            condition: RestartCondition::OnFailure.into(),
            max_attempts: 3,
        }),
        read_only_rootfs: true,
        cap_add: vec!["NET_BIND_SERVICE".to_owned()],
        cap_drop: vec!["ALL".to_owned()],
        no_new_privileges: true,
        stop_grace_period_ms: 10_000,
        stop_signal: "SIGQUIT".to_owned(),
        labels: HashMap::from([("tier".to_owned(), "front".to_owned())]),
    }
}

#[test]
fn container_spec_round_trips() {
    let spec = full_spec();
    assert_eq!(round_trip(&spec), spec);
}

#[test]
fn container_status_round_trips() {
    let status = ContainerStatus {
        id: "c-1".to_owned(),
        name: "web.1".to_owned(),
        state: ContainerState::Exited.into(),
        exit_code: 137,
        reason: ExitReason::Oom.into(),
        message: "memory limit of 256 MiB reached".to_owned(),
        started_at_unix_ms: 1_700_000_000_000,
        finished_at_unix_ms: 1_700_000_060_000,
        restart_count: 2,
    };
    let decoded = round_trip(&status);
    assert_eq!(decoded, status);
    assert_eq!(decoded.state(), ContainerState::Exited);
    assert_eq!(decoded.reason(), ExitReason::Oom);
}

#[test]
fn version_info_and_empty_round_trip() {
    let info = version_info();
    assert_eq!(round_trip(&info), info);
    assert_eq!(round_trip(&Empty {}), Empty {});
    assert!(Empty {}.encode_to_vec().is_empty());
}

#[test]
fn unset_fields_decode_as_defaults() {
    let spec = ContainerSpec::decode(&[][..]).expect("an empty buffer is a valid message");
    assert_eq!(spec, ContainerSpec::default());
    assert_eq!(spec.resources, None);
    assert_eq!(spec.restart, None);

    assert_eq!(PortMapping::default().protocol(), Protocol::Unspecified);
    assert_eq!(Mount::default().kind(), MountKind::Unspecified);
    assert_eq!(
        RestartPolicy::default().condition(),
        RestartCondition::Unspecified
    );
    assert_eq!(
        ContainerStatus::default().state(),
        ContainerState::Unspecified
    );
    assert_eq!(ContainerStatus::default().reason(), ExitReason::Unspecified);
}

#[test]
fn enum_values_this_build_does_not_know_read_as_unspecified() {
    let mapping = PortMapping {
        protocol: 99,
        ..PortMapping::default()
    };
    let decoded = round_trip(&mapping);
    assert_eq!(decoded.protocol, 99, "the raw value survives a round trip");
    assert_eq!(decoded.protocol(), Protocol::Unspecified);
}

#[test]
fn enum_names_match_the_proto_file() {
    assert_eq!(Protocol::Udp.as_str_name(), "PROTOCOL_UDP");
    assert_eq!(
        MountKind::from_str_name("MOUNT_KIND_VOLUME"),
        Some(MountKind::Volume)
    );
    assert_eq!(
        ContainerState::Running.as_str_name(),
        "CONTAINER_STATE_RUNNING"
    );
    assert_eq!(
        ExitReason::ImageError.as_str_name(),
        "EXIT_REASON_IMAGE_ERROR"
    );
}

#[test]
fn version_info_describes_this_build() {
    let info = version_info();
    assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(info.api_version, API_VERSION);
    assert_eq!(API_VERSION, "v1");
    assert!(!info.git_commit.is_empty());
}

#[test]
fn info_service_has_its_package_qualified_name() {
    assert_eq!(crate::v1::info_server::SERVICE_NAME, "berth.v1.Info");
}

/// A field decoded with the wrong wire type is an error, not silently a default.
#[test]
fn malformed_bytes_are_rejected() {
    // Field 1 (`version`) as a varint instead of a length-delimited string.
    assert!(VersionInfo::decode(&[0x08, 0x01][..]).is_err());
}
