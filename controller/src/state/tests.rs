use super::*;

fn spec(name: &str, image: &str, replicas: u32) -> ServiceSpec {
    ServiceSpec {
        name: name.into(),
        image: image.into(),
        entrypoint: None,
        command: vec![],
        env: vec!["A=1".into()],
        mode: ServiceMode::Replicated { replicas },
        ports: vec![PortSpec {
            target: 80,
            published: Some(8080),
            protocol: Protocol::Tcp,
            mode: PortMode::Host,
        }],
        links: vec![],
        resources: Resources::default(),
        constraints: vec!["node.labels.disk==ssd".into()],
        labels: Default::default(),
        max_replicas_per_node: None,
        preferences: vec![],
        healthcheck: None,
        restart: RestartPolicy::default(),
        update_config: None,
        rollback_config: None,
        force_update: 0,
    }
}

#[test]
fn apply_creates_updates_keeps_history_and_skips_no_change() {
    let Applied::Created(s1) = apply_service(None, spec("web", "nginx:1", 3), Some(0), 10).unwrap()
    else {
        panic!("not created")
    };
    assert_eq!((s1.version, s1.created_at, s1.history.len()), (1, 10, 0));
    let Applied::Unchanged(_) =
        apply_service(Some(&s1), spec("web", "nginx:1", 3), None, 11).unwrap()
    else {
        panic!("a same spec must not make a version")
    };
    let mut cur = s1;
    for i in 2..=15u64 {
        let Applied::Updated(next) = apply_service(
            Some(&cur),
            spec("web", &format!("nginx:{i}"), 3),
            Some(i - 1),
            i as i128,
        )
        .unwrap() else {
            panic!("not updated")
        };
        assert_eq!(next.version, i);
        cur = next;
    }
    assert_eq!(cur.history.len(), HISTORY_LEN);
    assert_eq!(cur.history.first().unwrap().version, 5);
    assert_eq!(cur.history.last().unwrap().spec.image, "nginx:14");
    assert_eq!(cur.created_at, 10);
}

#[test]
fn stale_and_missing_versions_are_refused_with_both_numbers() {
    let Applied::Created(s1) = apply_service(None, spec("web", "a", 1), None, 0).unwrap() else {
        panic!()
    };
    let e = apply_service(Some(&s1), spec("web", "b", 1), Some(7), 1).unwrap_err();
    assert_eq!(
        e,
        StateError::StaleVersion {
            service: "web".into(),
            expected: 7,
            actual: 1
        }
    );
    assert!(e.to_string().contains("version 1, not 7"), "{e}");
    let e = apply_service(None, spec("api", "b", 1), Some(2), 1).unwrap_err();
    assert!(matches!(e, StateError::NoSuchService { .. }), "{e}");
    // Some(0) means "must not exist yet".
    let e = apply_service(Some(&s1), spec("web", "b", 1), Some(0), 1).unwrap_err();
    assert!(
        matches!(e, StateError::StaleVersion { actual: 1, .. }),
        "{e}"
    );
}

#[test]
fn invalid_specs_name_the_field() {
    type Change = Box<dyn Fn(&mut ServiceSpec)>;
    let cases: Vec<(Change, &str)> = vec![
        (Box::new(|s| s.name = "Web_1".into()), "invalid name"),
        (Box::new(|s| s.image = "".into()), "invalid image"),
        (
            Box::new(|s| s.mode = ServiceMode::Replicated { replicas: 10_001 }),
            "invalid replicas",
        ),
        (
            Box::new(|s| s.env = vec!["=x".into()]),
            "invalid environment",
        ),
        (Box::new(|s| s.ports[0].target = 0), "invalid ports"),
        (Box::new(|s| s.ports.push(s.ports[0])), "published twice"),
        (
            Box::new(|s| {
                s.links = vec![LinkSpec {
                    service: "web".into(),
                    alias: "w".into(),
                }]
            }),
            "itself",
        ),
        (
            Box::new(|s| s.resources.cpus_limit = Some(0.0)),
            "invalid resources",
        ),
        (
            Box::new(|s| {
                s.resources.memory_limit = Some(1);
                s.resources.memory_reserved = Some(2)
            }),
            "above the limit",
        ),
        (
            Box::new(|s| s.constraints = vec!["node.colour==red".into()]),
            "unknown attribute",
        ),
        (
            Box::new(|s| s.constraints = vec!["node.hostname".into()]),
            "no == or !=",
        ),
        (
            Box::new(|s| s.max_replicas_per_node = Some(0)),
            "invalid max_replicas_per_node",
        ),
        (
            Box::new(|s| s.preferences = vec!["spread: node.zone".into()]),
            "invalid preferences",
        ),
        (
            Box::new(|s| s.preferences = vec!["spread node.labels.zone".into()]),
            "spread: node.labels.KEY",
        ),
    ];
    for (change, want) in cases {
        let mut s = spec("web", "img", 1);
        change(&mut s);
        let e = validate_spec(&s).unwrap_err().to_string();
        assert!(
            e.contains(want) && e.contains(&format!("{:?}", s.name)),
            "{want}: {e}"
        );
    }
    assert!(validate_spec(&spec("web", "img", 1)).is_ok());
}

#[test]
fn constraints_and_preferences_parse() {
    use validate::{Constraint, ConstraintAttribute, parse_constraint, parse_preference};
    assert_eq!(
        parse_constraint(" node.labels.disk == ssd ").unwrap(),
        Constraint {
            attribute: ConstraintAttribute::Label("disk".into()),
            equal: true,
            value: "ssd".into(),
        }
    );
    let ne = parse_constraint("node.hostname!=h2").unwrap();
    assert_eq!(
        (ne.attribute, ne.equal),
        (ConstraintAttribute::Hostname, false)
    );
    assert_eq!(
        parse_constraint("node.id==n1").unwrap().attribute,
        ConstraintAttribute::Id
    );
    assert!(parse_constraint("node.labels.==x").is_err());
    assert!(parse_constraint("node.id==").is_err());
    for p in [
        "spread: node.labels.zone",
        "spread:node.labels.zone",
        "node.labels.zone",
    ] {
        assert_eq!(parse_preference(p).unwrap(), "zone", "{p}");
    }
    for p in ["spread: zone", "node.labels.", "spread: node.labels.a b"] {
        assert!(parse_preference(p).is_err(), "{p}");
    }
    // Records written before these fields existed still read.
    let json = serde_json::to_string(&spec("web", "img", 2)).unwrap();
    let old = json
        .replace(",\"max_replicas_per_node\":null", "")
        .replace(",\"preferences\":[]", "");
    assert!(!old.contains("preferences"), "{old}");
    assert_eq!(
        serde_json::from_str::<ServiceSpec>(&old).unwrap(),
        spec("web", "img", 2)
    );
}

#[test]
fn records_round_trip_and_unknown_fields_are_refused() {
    let s = spec("web", "img", 2);
    let json = serde_json::to_string(&s).unwrap();
    assert_eq!(serde_json::from_str::<ServiceSpec>(&json).unwrap(), s);
    let e =
        serde_json::from_str::<ServiceSpec>(&json.replace("\"image\"", "\"imag\"")).unwrap_err();
    assert!(e.to_string().contains("imag"), "{e}");
    assert_eq!(keys::service("web"), "services/web");
}

#[test]
fn scaling_changes_only_the_replicas_and_refuses_global_services() {
    let web = spec("web", "nginx:1", 3);
    let scaled = scale_spec(&web, 7).unwrap();
    assert_eq!(scaled.mode, ServiceMode::Replicated { replicas: 7 });
    assert_eq!(
        ServiceSpec {
            mode: web.mode,
            ..scaled.clone()
        },
        web
    );
    let too_many = scale_spec(&web, validate::MAX_REPLICAS + 1).unwrap_err();
    assert!(
        matches!(&too_many, StateError::Invalid { field, .. } if field == "replicas"),
        "{too_many}"
    );
    let global = ServiceSpec {
        mode: ServiceMode::Global,
        ..web
    };
    let refused = scale_spec(&global, 2).unwrap_err();
    assert!(
        refused.to_string().contains("cannot be scaled"),
        "{refused}"
    );
}

#[test]
fn same_tasks_ignores_replicas_and_rollout_settings_only() {
    let a = spec("web", "web:1", 3);
    let scaled = ServiceSpec {
        mode: ServiceMode::Replicated { replicas: 9 },
        update_config: Some(UpdateConfig::default()),
        rollback_config: Some(UpdateConfig::default()),
        ..a.clone()
    };
    assert!(a.same_tasks_as(&scaled));
    for other in [
        ServiceSpec {
            image: "web:2".into(),
            ..a.clone()
        },
        ServiceSpec {
            env: vec!["A=2".into()],
            ..a.clone()
        },
        ServiceSpec {
            force_update: 1,
            ..a.clone()
        },
        ServiceSpec {
            mode: ServiceMode::Global,
            ..a.clone()
        },
    ] {
        assert!(!a.same_tasks_as(&other), "{other:?}");
    }
}
