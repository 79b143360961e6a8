//! The risk stage over the reference policy of examples/rules/access.yaml: scoring, signal
//! effects and each reference rule, without any server.

use chrono::{DateTime, Duration, TimeZone, Utc};
use mesh_engine::risk::{
    AccessPolicy, AccessRequest, DeviceRecord, IdentityFacts, RiskLevel, RiskState, Sensitivity,
    Sighting, Verdict, assess, decide, distance_km, sign_in_effects, standing_level,
};
use mesh_engine::{SourceFile, load, validate};
use mesh_model::{AttributeName, Attributes, LifecycleState, ObjectType, Value};

fn reference() -> AccessPolicy {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/rules");
    let mut sources = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let contents = std::fs::read_to_string(&path).unwrap();
        sources.push(SourceFile::new(path.display().to_string(), contents));
    }
    load(&sources).unwrap().access_policy().unwrap().clone()
}

fn at(day: u32, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, day, hour, 0, 0).unwrap()
}

fn request(time: DateTime<Utc>) -> AccessRequest {
    AccessRequest {
        subject: "aturing".into(),
        resource: "app:wiki".into(),
        action: "read".into(),
        sensitivity: Sensitivity::Low,
        ip: None,
        device_id: None,
        location: None,
        mfa_completed: false,
        mfa_method: None,
        mfa_at: None,
        interactive: true,
        time,
        context: Attributes::new(),
    }
}

fn attrs(pairs: &[(&str, Value)]) -> Attributes {
    pairs
        .iter()
        .map(|(k, v)| (AttributeName::parse(k).unwrap(), v.clone()))
        .collect()
}

/// A user who joined a month before `at(1, 0)`.
fn employee() -> IdentityFacts {
    IdentityFacts {
        mesh_object: Some("7f1c9a52-1d6e-4c2a-9a44-0b5e5f2a1001".into()),
        object_type: Some(ObjectType::parse("User").unwrap()),
        lifecycle: Some(LifecycleState::Active),
        joined_at: Some(at(1, 0) - Duration::days(30)),
        attributes: attrs(&[("SamAccountName", "aturing".into())]),
        owner: None,
    }
}

fn service_account(owner: Option<Option<LifecycleState>>) -> IdentityFacts {
    IdentityFacts {
        object_type: Some(ObjectType::parse("ServiceAccount").unwrap()),
        attributes: attrs(&[("AccountName", "svc-backup".into())]),
        owner,
        ..employee()
    }
}

#[test]
fn an_ordinary_request_is_allowed_by_default() {
    let outcome = decide(
        &reference(),
        &request(at(1, 9)),
        &RiskState::default(),
        &employee(),
    );
    assert_eq!(outcome.verdict, Verdict::Allow);
    assert_eq!(outcome.policy, "default");
    assert_eq!(outcome.assessment.score, 0);
    assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
}

#[test]
fn a_leaver_is_denied() {
    let leaver = IdentityFacts {
        lifecycle: Some(LifecycleState::Leaver),
        ..employee()
    };
    let outcome = decide(
        &reference(),
        &request(at(1, 9)),
        &RiskState::default(),
        &leaver,
    );
    assert_eq!(outcome.verdict, Verdict::Deny);
    assert_eq!(outcome.policy, "leaver");
    assert_eq!(outcome.assessment.score, 100);
    assert_eq!(outcome.reasons[0].code, "leaver");
    assert_eq!(outcome.reasons[1].code, "leaver");
    assert_eq!(outcome.reasons[1].weight, 100);
}

#[test]
fn an_unknown_subject_is_denied() {
    let outcome = decide(
        &reference(),
        &request(at(1, 9)),
        &RiskState::default(),
        &IdentityFacts::default(),
    );
    assert_eq!(
        (outcome.verdict, outcome.policy.as_str()),
        (Verdict::Deny, "unknown-identity")
    );
}

#[test]
fn a_new_joiner_needs_mfa_for_seven_days() {
    let joiner = IdentityFacts {
        joined_at: Some(at(1, 8)),
        ..employee()
    };
    let policy = reference();
    let state = RiskState::default();
    let first_day = decide(&policy, &request(at(1, 9)), &state, &joiner);
    assert_eq!(first_day.verdict, Verdict::RequireMfa);
    assert_eq!(first_day.policy, "new-joiner");
    let with_mfa = AccessRequest {
        mfa_completed: true,
        mfa_at: Some(at(1, 9)),
        ..request(at(1, 9))
    };
    assert_eq!(
        decide(&policy, &with_mfa, &state, &joiner).verdict,
        Verdict::Allow
    );
    let day_seven = decide(&policy, &request(at(8, 7)), &state, &joiner);
    assert_eq!(day_seven.verdict, Verdict::RequireMfa, "6 days 23 hours");
    let day_eight = decide(&policy, &request(at(8, 9)), &state, &joiner);
    assert_eq!(day_eight.verdict, Verdict::Allow);
}

#[test]
fn impossible_travel_needs_mfa() {
    let policy = reference();
    // Signed in from London at 09:00; the request comes from New York at 10:00.
    let state = RiskState {
        last_sighting: Some(Sighting {
            latitude: 51.5072,
            longitude: -0.1276,
            at: at(1, 9),
            country: Some("GB".into()),
        }),
        ..RiskState::default()
    };
    let from_new_york = AccessRequest {
        location: Some((40.7128, -74.0060, Some("US".into()))),
        ..request(at(1, 10))
    };
    let outcome = decide(&policy, &from_new_york, &state, &employee());
    assert_eq!(outcome.verdict, Verdict::RequireMfa);
    assert_eq!(outcome.policy, "impossible-travel");
    assert!(
        outcome
            .reasons
            .iter()
            .any(|r| r.code == "impossible_travel" && r.weight == 50)
    );
    // Eight hours later the journey is possible by plane (~5,570 km at under 900 km/h).
    let later = AccessRequest {
        time: at(1, 17),
        ..from_new_york
    };
    assert_eq!(
        decide(&policy, &later, &state, &employee()).verdict,
        Verdict::Allow
    );
}

#[test]
fn sign_in_effects_find_an_impossible_journey_and_keep_the_latest_sighting() {
    let policy = reference();
    let london = Sighting {
        latitude: 51.5072,
        longitude: -0.1276,
        at: at(1, 9),
        country: Some("GB".into()),
    };
    let sydney = (-33.8688, 151.2093, Some("AU".into()));
    let effects = sign_in_effects(
        &policy.scoring,
        Some(&london),
        true,
        Some(sydney.clone()),
        None,
        at(1, 11),
    );
    let kmh = effects.impossible_travel_kmh.unwrap();
    assert!((8_000.0..9_000.0).contains(&kmh), "{kmh}");
    assert_eq!(effects.sighting.unwrap().at, at(1, 11));
    // A sign-in that arrives late still counts as a journey but does not replace the newer
    // sighting.
    let late = sign_in_effects(
        &policy.scoring,
        Some(&london),
        true,
        Some(sydney),
        None,
        at(1, 8),
    );
    assert!(late.impossible_travel_kmh.is_some());
    assert!(late.sighting.is_none());
    // Failures are counted, and never move the sighting.
    let failed = sign_in_effects(&policy.scoring, Some(&london), false, None, None, at(1, 12));
    assert!(failed.failed && failed.sighting.is_none());
    // Paris to London in three hours is a train ride.
    let paris = sign_in_effects(
        &policy.scoring,
        Some(&london),
        true,
        Some((48.8566, 2.3522, None)),
        None,
        at(1, 12),
    );
    assert_eq!(paris.impossible_travel_kmh, None);
}

#[test]
fn distance_is_great_circle() {
    let km = distance_km((51.5072, -0.1276), (40.7128, -74.0060));
    assert!((5_560.0..5_590.0).contains(&km), "{km}");
    assert_eq!(distance_km((10.0, 10.0), (10.0, 10.0)), 0.0);
}

#[test]
fn failed_sign_ins_raise_the_score_beyond_the_free_ones_up_to_the_cap() {
    let policy = reference();
    let score = |failed| {
        assess(
            &policy,
            &RiskState {
                failed_sign_ins: failed,
                ..RiskState::default()
            },
            &employee(),
            None,
            at(1, 9),
        )
        .score
    };
    assert_eq!(score(2), 0);
    assert_eq!(score(3), 10);
    assert_eq!(score(5), 30);
    assert_eq!(score(50), 40);
    let state = RiskState {
        failed_sign_ins: 5,
        ..RiskState::default()
    };
    assert_eq!(standing_level(&policy, &state, at(1, 9)), RiskLevel::Medium);
    // Medium risk steps up to MFA; with a high-sensitivity resource and stale MFA it is 40
    // points, still below the deny rule's 50.
    let outcome = decide(&policy, &request(at(1, 9)), &state, &employee());
    assert_eq!(outcome.verdict, Verdict::RequireMfa);
    assert_eq!(outcome.policy, "elevated-risk");
}

#[test]
fn high_risk_on_a_sensitive_resource_is_denied() {
    let policy = reference();
    let state = RiskState {
        failed_sign_ins: 6,
        device: Some(DeviceRecord {
            seen: true,
            managed: Some(true),
            compliant: Some(false),
        }),
        ..RiskState::default()
    };
    let sensitive = AccessRequest {
        sensitivity: Sensitivity::High,
        device_id: Some("laptop-7".into()),
        ..request(at(1, 9))
    };
    let outcome = decide(&policy, &sensitive, &state, &employee());
    // 40 (failures, capped) + 25 (non-compliant) + 10 (stale MFA) = 75.
    assert_eq!(outcome.assessment.score, 75);
    assert_eq!(outcome.assessment.level, RiskLevel::Critical);
    assert_eq!(outcome.verdict, Verdict::Deny);
    assert_eq!(outcome.policy, "high-risk-sensitive");
    let codes: Vec<&str> = outcome.reasons.iter().map(|r| r.code.as_str()).collect();
    assert_eq!(
        codes,
        [
            "high-risk-sensitive",
            "failed_sign_ins",
            "noncompliant_device",
            "stale_mfa"
        ]
    );
    // The same state on a low resource only steps up.
    let low = AccessRequest {
        sensitivity: Sensitivity::Low,
        ..sensitive
    };
    assert_eq!(
        decide(&policy, &low, &state, &employee()).verdict,
        Verdict::RequireMfa
    );
}

#[test]
fn a_service_account_used_interactively_is_denied() {
    let policy = reference();
    let account = service_account(Some(Some(LifecycleState::Active)));
    let interactive = decide(&policy, &request(at(1, 9)), &RiskState::default(), &account);
    assert_eq!(
        (interactive.verdict, interactive.policy.as_str()),
        (Verdict::Deny, "nhi-interactive-use")
    );
    let token = AccessRequest {
        interactive: false,
        ..request(at(1, 9))
    };
    let outcome = decide(&policy, &token, &RiskState::default(), &account);
    assert_eq!(outcome.verdict, Verdict::Allow, "{outcome:?}");
}

#[test]
fn an_expired_or_ownerless_service_account_is_denied() {
    let policy = reference();
    let token = AccessRequest {
        interactive: false,
        ..request(at(1, 9))
    };
    let mut expired = service_account(Some(Some(LifecycleState::Active)));
    expired.attributes.insert(
        AttributeName::parse("ExpiresAt").unwrap(),
        "2026-02-28".into(),
    );
    let outcome = decide(&policy, &token, &RiskState::default(), &expired);
    assert_eq!(
        (outcome.verdict, outcome.policy.as_str()),
        (Verdict::Deny, "nhi-expired")
    );

    for owner in [None, Some(None), Some(Some(LifecycleState::Leaver))] {
        let outcome = decide(
            &policy,
            &token,
            &RiskState::default(),
            &service_account(owner),
        );
        assert_eq!(
            (outcome.verdict, outcome.policy.as_str()),
            (Verdict::Deny, "nhi-ownerless"),
            "owner {owner:?}"
        );
    }
}

#[test]
fn policies_are_validated_with_positions() {
    let bad = r#"apiVersion: identitymesh.io/v1
kind: AccessPolicy
metadata: { name: broken }
spec:
  default: allow
  degraded: allow
  rules:
    - name: typo
      when: 'risk.scroe > 50'
      decision: deny
    - name: limited
      when: 'request.action == "write"'
      decision: limit
    - name: worse
      when: 'Left(request.subject'
      decision: block
---
apiVersion: identitymesh.io/v1
kind: AccessPolicy
metadata: { name: second }
spec: { default: deny, rules: [] }
"#;
    let validation = validate(&[SourceFile::new("policy.yaml", bad)]);
    assert!(validation.rule_set.is_none());
    let found: Vec<(u32, &str)> = validation
        .problems
        .iter()
        .map(|p| (p.position.line, p.code.as_str()))
        .collect();
    for expected in [
        (6, "invalid-value"),
        (9, "unknown-name"),
        (11, "missing-field"),
        (16, "invalid-value"),
    ] {
        assert!(found.contains(&expected), "{expected:?} not in {found:?}");
    }
    assert!(
        validation
            .problems
            .iter()
            .any(|p| p.position.line == 15 && p.code.starts_with('E')),
        "{found:?}"
    );
}
