//! The swap schedule against the numpy spec: `tests/data/plans/swap_cases.json` (made
//! by `make_swap_goldens.py` beside it from `edgetrain.planning.swap`) holds, for the
//! example models' training programs, the request the core is given (the plan's facts
//! about every buffer, the swapped set, the lookahead) and the spec's schedule; the core
//! computes the schedule itself and must give exactly the same segments, offsets,
//! slots and traffic.

use std::path::Path;

use edgetrain_core::planner::swap::{plan_swap, SwapRequest};
use serde_json::Value;

fn golden() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/plans/swap_cases.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).expect("swap_cases.json is JSON")
}

#[test]
fn the_core_computes_the_spec_schedule_of_every_example_model() {
    let data = golden();
    let cases = data["cases"].as_array().expect("cases");
    assert!(
        cases.len() >= 8,
        "the golden file has {} cases",
        cases.len()
    );
    for case in cases {
        let name = case["name"].as_str().expect("a name");
        let request: SwapRequest = serde_json::from_value(case["request"].clone())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let plan = plan_swap(&request).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut got = serde_json::to_value(&plan).expect("a schedule serializes");
        got.as_object_mut().unwrap().remove("orders");
        let mut want = case.clone();
        for key in ["name", "model", "budget", "request"] {
            want.as_object_mut().unwrap().remove(key);
        }
        assert_eq!(
            got, want,
            "{name}: the core's schedule differs from the spec's"
        );
    }
}

#[test]
fn a_request_for_another_lookahead_gives_another_schedule() {
    let data = golden();
    let case = &data["cases"][0];
    let mut request: SwapRequest = serde_json::from_value(case["request"].clone()).unwrap();
    request.swapped = None;
    let near = plan_swap(&request).unwrap();
    request.lookahead += 3;
    let far = plan_swap(&request).unwrap();
    assert_ne!(near.segments, far.segments);
    assert!(far.resident_bytes >= near.resident_bytes || far.bytes_read != near.bytes_read);
}
