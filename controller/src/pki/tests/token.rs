use super::super::{
    CaFingerprint, JoinToken, PkiError, Role, StoredToken, TokenError, verify_ca_fingerprint,
};
use super::test_ca;

const FP: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const SECRET: &str = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";

fn token_err(s: &str) -> TokenError {
    match JoinToken::parse(s) {
        Err(PkiError::Token(e)) => e,
        other => panic!("{s:?}: expected a token error, got {other:?}"),
    }
}

fn verify_err(stored: &StoredToken, presented: &JoinToken, role: Role) -> TokenError {
    match stored.verify(presented, role) {
        Err(PkiError::Token(e)) => e,
        other => panic!("expected a token error, got {other:?}"),
    }
}

#[test]
fn generate_parse_round_trip() {
    let ca = test_ca("prod");
    for (role, letter) in [(Role::Agent, "a"), (Role::Controller, "c")] {
        let token = JoinToken::generate(role, ca.fingerprint()).unwrap();
        let text = token.to_string();
        assert_eq!(text.len(), 139);
        assert!(text.starts_with(&format!("BERTH-1-{}-{letter}-", ca.fingerprint())));
        assert_eq!(JoinToken::parse(&text).unwrap(), token);
        assert_eq!(JoinToken::parse(&format!("  {text}\n")).unwrap(), token);
        assert_eq!(token.role(), role);
        assert_eq!(token.ca_fingerprint(), ca.fingerprint());
        let secret = &text[text.len() - 64..];
        assert!(!format!("{token:?}").contains(secret));
    }
    let a = JoinToken::generate(Role::Agent, ca.fingerprint()).unwrap();
    let b = JoinToken::generate(Role::Agent, ca.fingerprint()).unwrap();
    assert_ne!(a, b, "secrets are random");
}

#[test]
fn no_admin_tokens() {
    let err = JoinToken::generate(Role::Admin, test_ca("prod").fingerprint()).unwrap_err();
    assert!(
        err.to_string()
            .contains("no join tokens for the admin role"),
        "{err}"
    );
}

#[test]
fn malformed_tokens_name_the_problem() {
    let upper_fp = FP.to_uppercase();
    let cases: Vec<(String, &str)> = vec![
        (String::new(), "empty"),
        ("   ".into(), "empty"),
        ("B".repeat(1000), "1000 bytes long"),
        (
            format!("SWMTKN-1-{FP}-a-{SECRET}"),
            "must start with `BERTH-`",
        ),
        (
            format!("berth-1-{FP}-a-{SECRET}"),
            "must start with `BERTH-`",
        ),
        (
            format!("BERTH-2-{FP}-a-{SECRET}"),
            "version `2` is not supported",
        ),
        ("BERTH".into(), "version `` is not supported"),
        (format!("BERTH-1-{FP}-a"), "has 4 `-`-separated parts"),
        (
            format!("BERTH-1-{FP}-a-{SECRET}-x"),
            "has 6 `-`-separated parts",
        ),
        (
            format!("BERTH-1-{}-a-{SECRET}", &FP[1..]),
            "fingerprint must be 64 lowercase hex digits, found 63 characters",
        ),
        (
            format!("BERTH-1-{upper_fp}-a-{SECRET}"),
            "found 64 characters that are not all lowercase hex",
        ),
        (
            format!("BERTH-1-{FP}-x-{SECRET}"),
            "role must be `a` (agent) or `c` (controller), found `x`",
        ),
        (format!("BERTH-1-{FP}--{SECRET}"), "found ``"),
        (format!("BERTH-1-{FP}-agent-{SECRET}"), "found `agent`"),
        (
            format!("BERTH-1-{FP}-a-{}", &SECRET[2..]),
            "secret must be 64 lowercase hex digits, found 62 characters",
        ),
        (
            format!("BERTH-1-{FP}-a-{}g", &SECRET[1..]),
            "secret must be 64 lowercase hex digits, found 64 characters that are not",
        ),
    ];
    for (input, expected) in cases {
        let err = token_err(&input);
        let message = err.to_string();
        assert!(message.contains(expected), "{input:?}: {message}");
        assert!(
            !message.contains(&SECRET[4..]),
            "leaks the secret: {message}"
        );
    }
    assert!(matches!(
        token_err(&format!("BERTH-1-{FP}-a-{SECRET}x")),
        TokenError::BadSecret {
            len: 65,
            not_hex: true
        }
    ));
    JoinToken::parse(&format!("BERTH-1-{FP}-a-{SECRET}")).unwrap();
}

#[test]
fn verify_accepts_the_issued_token() {
    let ca = test_ca("prod");
    let token = JoinToken::generate(Role::Agent, ca.fingerprint()).unwrap();
    let stored = token.stored();
    let presented = JoinToken::parse(&token.to_string()).unwrap();
    stored.verify(&presented, Role::Agent).unwrap();
}

#[test]
fn forged_secret_is_refused() {
    let ca = test_ca("prod");
    let stored = JoinToken::generate(Role::Agent, ca.fingerprint())
        .unwrap()
        .stored();
    let forged = JoinToken::parse(&format!("BERTH-1-{}-a-{SECRET}", ca.fingerprint())).unwrap();
    let err = verify_err(&stored, &forged, Role::Agent);
    assert_eq!(err, TokenError::BadSecretValue);
    assert!(err.to_string().contains("not valid"), "{err}");
}

#[test]
fn wrong_role_is_refused() {
    let ca = test_ca("prod");
    let agent = JoinToken::generate(Role::Agent, ca.fingerprint()).unwrap();
    let controller = JoinToken::generate(Role::Controller, ca.fingerprint()).unwrap();
    // An agent token presented by a node joining as a controller.
    let err = verify_err(&controller.stored(), &agent, Role::Controller);
    assert_eq!(
        err.to_string(),
        "this is an agent join token, but the node is joining as controller"
    );
    // A controller token presented to the agent token's check.
    let err = verify_err(&agent.stored(), &controller, Role::Agent);
    assert_eq!(
        err.to_string(),
        "this is a controller join token, but the node is joining as agent"
    );
    // The right token checked against the other role's stored token.
    let err = verify_err(&controller.stored(), &agent, Role::Agent);
    assert!(matches!(err, TokenError::WrongRole { .. }), "{err:?}");
}

#[test]
fn token_for_another_cluster_is_refused() {
    let ca = test_ca("prod");
    let other = test_ca("other");
    let stored = JoinToken::generate(Role::Agent, ca.fingerprint())
        .unwrap()
        .stored();
    let foreign = JoinToken::generate(Role::Agent, other.fingerprint()).unwrap();
    let err = verify_err(&stored, &foreign, Role::Agent);
    assert!(matches!(err, TokenError::CaMismatch { .. }), "{err:?}");
}

#[test]
fn joining_node_checks_the_ca_fingerprint() {
    let ca = test_ca("prod");
    let impostor = test_ca("prod");
    let token = JoinToken::generate(Role::Controller, ca.fingerprint()).unwrap();
    verify_ca_fingerprint(&token, ca.cert_der()).unwrap();
    let err = verify_ca_fingerprint(&token, impostor.cert_der()).unwrap_err();
    assert!(
        err.to_string().contains(&format!(
            "pins CA fingerprint {}, but the cluster CA's is {}",
            ca.fingerprint(),
            impostor.fingerprint()
        )),
        "{err}"
    );
}

#[test]
fn rotation_refuses_the_old_token() {
    let ca = test_ca("prod");
    let old = JoinToken::generate(Role::Agent, ca.fingerprint()).unwrap();
    let mut stored = old.stored();
    stored.verify(&old, Role::Agent).unwrap();

    let new = JoinToken::generate(Role::Agent, ca.fingerprint()).unwrap();
    stored = new.stored();
    stored.verify(&new, Role::Agent).unwrap();
    assert_eq!(
        verify_err(&stored, &old, Role::Agent),
        TokenError::BadSecretValue
    );
}

#[test]
fn stored_token_keeps_no_secret_and_round_trips() {
    let ca = test_ca("prod");
    let token = JoinToken::generate(Role::Controller, ca.fingerprint()).unwrap();
    let text = token.to_string();
    let stored = token.stored();
    let json = serde_json::to_string(&stored).unwrap();
    assert!(!json.contains(&text[text.len() - 64..]), "{json}");
    assert!(json.contains(&ca.fingerprint().to_string()), "{json}");
    let back: StoredToken = serde_json::from_str(&json).unwrap();
    assert_eq!(back, stored);
    back.verify(&token, Role::Controller).unwrap();

    let extra = json.replace('}', ",\"secret\":\"x\"}");
    assert!(serde_json::from_str::<StoredToken>(&extra).is_err());
    let short = json.replace(&hex::encode(stored.secret_sha256), "abcd");
    assert!(serde_json::from_str::<StoredToken>(&short).is_err());
}

#[test]
fn fingerprint_parse() {
    let fp: CaFingerprint = FP.parse().unwrap();
    assert_eq!(fp.to_string(), FP);
    assert!(FP.to_uppercase().parse::<CaFingerprint>().is_err());
    assert!(FP[1..].parse::<CaFingerprint>().is_err());
}
