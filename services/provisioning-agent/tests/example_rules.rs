//! The example rules (examples/rules, which `meshd run all` and docker-compose use) build a
//! target for every connector a projection rule exports to, even where the environment lacks
//! their secrets.

use mesh_model::ConnectorId;
use provisioning_agent::Targets;

#[test]
fn the_example_rules_build_their_targets() {
    let root = mesh_testkit::workspace_root();
    let rules = mesh_stage::load_rules(&root.join("examples/rules")).unwrap();
    let targets = Targets::from_rules_with_env(&rules, &|_| None).unwrap();
    let mut expected: Vec<ConnectorId> = rules
        .projection_rules()
        .iter()
        .map(|r| r.target.clone())
        .collect();
    expected.sort();
    expected.dedup();
    assert!(!expected.is_empty());
    let built: Vec<ConnectorId> = targets.connectors().cloned().collect();
    assert_eq!(built, expected);
}
