//! The planners against the numpy spec: `tests/data/plans/planner_cases.json` (made by
//! `make_plan_goldens.py` beside it from `edgetrain.planning`) holds blocks of the
//! example models' programs and of seeded random and tie-heavy sets, with every
//! planner's offsets, arena size and the lower bound; the core must give exactly the
//! same numbers. Then seeded random blocks: every plan passes the independent checker,
//! and the checker catches broken layouts.

use std::path::Path;
use std::str::FromStr;

use edgetrain_core::planner::bounds::{live_bytes, lower_bound};
use edgetrain_core::planner::checker::{check_layout, check_offsets, LayoutProblem, Placement};
use edgetrain_core::planner::{align, plan_offsets, Block, Planner, ALIGNMENT};
use serde_json::Value;

fn golden() -> Value {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/plans/planner_cases.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).expect("planner_cases.json is JSON")
}

fn uint(v: &Value) -> usize {
    v.as_u64().expect("a non-negative integer") as usize
}

fn uints(v: &Value) -> Vec<usize> {
    v.as_array().expect("an array").iter().map(uint).collect()
}

fn blocks_of(case: &Value) -> Vec<Block> {
    case["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| Block {
            size: uint(&b[1]),
            first: uint(&b[2]),
            last: uint(&b[3]),
            index: uint(&b[4]),
        })
        .collect()
}

#[test]
fn every_planner_reproduces_the_spec_offsets_exactly() {
    let data = golden();
    assert_eq!(uint(&data["alignment"]), ALIGNMENT);
    let cases = data["cases"].as_array().unwrap();
    let names: Vec<&str> = cases.iter().map(|c| c["name"].as_str().unwrap()).collect();
    for model in ["mlp", "lenet5", "vgg16", "resnet18", "digits_cnn"] {
        for program in ["train", "infer"] {
            let want = format!("{model}_{program}");
            assert!(names.contains(&want.as_str()), "no case {want}");
        }
    }
    assert!(names.iter().filter(|n| n.starts_with("random_")).count() >= 20);
    assert!(names.iter().filter(|n| n.starts_with("ties_")).count() >= 10);
    let mut compared = 0;
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let blocks = blocks_of(case);
        let planners = case["offsets"].as_object().unwrap();
        assert_eq!(planners.len(), Planner::ALL.len(), "{name}");
        for (planner, offsets) in planners {
            let planner = Planner::from_str(planner).unwrap();
            let layout = plan_offsets(planner, &blocks).unwrap();
            assert_eq!(layout.offsets, uints(offsets), "{name} {planner}");
            assert_eq!(
                layout.arena_bytes,
                uint(&case["arena"][planner.name()]),
                "{name} {planner}"
            );
            compared += 1;
        }
    }
    assert_eq!(compared, cases.len() * 3);
}

#[test]
fn the_lower_bound_and_live_bytes_are_the_spec_ones() {
    let data = golden();
    for case in data["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let blocks = blocks_of(case);
        let orders = uint(&case["orders"]);
        assert_eq!(
            live_bytes(&blocks, orders).unwrap(),
            uints(&case["live_bytes"]),
            "{name}"
        );
        let bound = lower_bound(&blocks, orders).unwrap();
        assert_eq!(bound.bytes, uint(&case["lower_bound"]), "{name}");
        assert_eq!(bound.peak_order, uint(&case["peak_order"]), "{name}");
    }
}

#[test]
fn the_golden_plans_pass_the_checker_and_respect_the_bound() {
    let data = golden();
    for case in data["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let blocks = blocks_of(case);
        let bound = uint(&case["lower_bound"]);
        for planner in Planner::ALL {
            let layout = plan_offsets(planner, &blocks).unwrap();
            let problems = check_offsets(&blocks, &layout.offsets, layout.arena_bytes);
            assert!(problems.is_empty(), "{name} {planner}: {problems:?}");
            assert!(layout.arena_bytes >= bound, "{name} {planner}");
        }
    }
}

/// SplitMix64: a seeded generator, so a failure names the seed that reproduces it.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0; the modulo bias is irrelevant here).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn random_blocks(rng: &mut Rng) -> (Vec<Block>, usize) {
    let span = if rng.below(2) == 0 { 6 } else { 60 };
    let orders = 1 + rng.below(span);
    let count = rng.below(80);
    let mut blocks: Vec<Block> = (0..count)
        .map(|i| {
            let first = rng.below(orders);
            let last = first + rng.below(orders - first);
            let (first, last) = if rng.below(10) == 0 {
                (0, orders - 1)
            } else {
                (first, last)
            };
            let size = match rng.below(5) {
                0 => 0,
                1 => 64,
                2 => 128,
                3 => 4096,
                _ => align(1 + rng.below(100_000)).unwrap(),
            };
            Block {
                size,
                first,
                last,
                index: 3 * i + rng.below(3),
            }
        })
        .collect();
    for i in (1..blocks.len()).rev() {
        blocks.swap(i, rng.below(i + 1));
    }
    (blocks, orders)
}

#[test]
fn every_plan_of_random_blocks_passes_the_checker() {
    for seed in 0..2000u64 {
        let mut rng = Rng(seed);
        let (blocks, orders) = random_blocks(&mut rng);
        let bound = lower_bound(&blocks, orders).unwrap().bytes;
        let total: usize = blocks.iter().map(|b| b.size).sum();
        for planner in Planner::ALL {
            let layout = plan_offsets(planner, &blocks).unwrap();
            let problems = check_offsets(&blocks, &layout.offsets, layout.arena_bytes);
            assert!(problems.is_empty(), "seed {seed} {planner}: {problems:?}");
            assert!(
                bound <= layout.arena_bytes && layout.arena_bytes <= total,
                "seed {seed} {planner}: arena {} outside [{bound}, {total}]",
                layout.arena_bytes
            );
            if planner == Planner::Naive {
                assert_eq!(layout.arena_bytes, total, "seed {seed}");
            }
        }
    }
}

#[test]
fn plans_do_not_depend_on_the_order_blocks_are_given_in() {
    for seed in 0..300u64 {
        let mut rng = Rng(seed);
        let (blocks, _) = random_blocks(&mut rng);
        let reversed: Vec<Block> = blocks.iter().rev().copied().collect();
        for planner in Planner::ALL {
            let forward = plan_offsets(planner, &blocks).unwrap();
            let mut backward = plan_offsets(planner, &reversed).unwrap();
            backward.offsets.reverse();
            assert_eq!(forward, backward, "seed {seed} {planner}");
        }
    }
}

#[test]
fn reusing_planners_fit_disjoint_lifetimes_into_one_slot() {
    let blocks: Vec<Block> = (0..4)
        .map(|i| Block {
            size: 128,
            first: i,
            last: i,
            index: i,
        })
        .collect();
    assert_eq!(
        plan_offsets(Planner::Naive, &blocks).unwrap().arena_bytes,
        512
    );
    for planner in [Planner::Sorted, Planner::GreedyBySize] {
        let layout = plan_offsets(planner, &blocks).unwrap();
        assert_eq!(layout.offsets, vec![0; 4], "{planner}");
        assert_eq!(layout.arena_bytes, 128, "{planner}");
    }
}

#[test]
fn greedy_takes_the_smallest_gap_and_sorted_the_lowest() {
    // At order 1, q1 (512..704) and q2 (832..896) leave two gaps: 0..512 and 704..832.
    // The 64-byte r takes the smaller (greedy_by_size) or the lower (sorted) one.
    let block = |size, first, last, index| Block {
        size,
        first,
        last,
        index,
    };
    let blocks = [
        block(512, 0, 0, 0),
        block(192, 0, 1, 1),
        block(128, 0, 0, 2),
        block(64, 0, 1, 3),
        block(64, 1, 1, 4),
    ];
    let greedy = plan_offsets(Planner::GreedyBySize, &blocks).unwrap();
    assert_eq!(greedy.offsets, vec![0, 512, 704, 832, 704]);
    let sorted = plan_offsets(Planner::Sorted, &blocks).unwrap();
    assert_eq!(sorted.offsets, vec![0, 512, 704, 832, 0]);
    assert_eq!((greedy.arena_bytes, sorted.arena_bytes), (896, 896));
}

#[test]
fn bad_blocks_and_names_are_refused_with_the_reason() {
    let ok = Block {
        size: 64,
        first: 0,
        last: 1,
        index: 0,
    };
    let cases = [
        (Block { size: 65, ..ok }, "not a multiple of 64"),
        (Block { first: 2, ..ok }, "empty interval [2, 1]"),
        (
            Block { index: 0, ..ok },
            "index 0 is given to several blocks",
        ),
    ];
    for (bad, reason) in cases {
        for planner in Planner::ALL {
            let err = plan_offsets(planner, &[ok, bad]).unwrap_err().to_string();
            assert!(err.contains(reason), "{err}");
        }
    }
    let huge = Block {
        size: usize::MAX - 63,
        index: 1,
        ..ok
    };
    assert!(plan_offsets(Planner::Sorted, &[huge, Block { index: 2, ..huge }]).is_err());
    let err = Planner::from_str("best").unwrap_err().to_string();
    assert!(err.contains("unknown planner \"best\""), "{err}");
    assert!(live_bytes(&[Block { last: 5, ..ok }], 5).is_err());
    assert_eq!(plan_offsets(Planner::Sorted, &[]).unwrap().arena_bytes, 0);
    let empty = lower_bound(&[], 0).unwrap();
    assert_eq!((empty.bytes, empty.peak_order), (0, 0));
}

fn at(offset: usize, size: usize, first: usize, last: usize, group: usize) -> Placement {
    Placement {
        offset,
        size,
        first,
        last,
        group,
    }
}

#[test]
fn the_checker_names_every_broken_rule() {
    let good = [
        at(0, 128, 0, 1, 0),
        at(0, 64, 2, 3, 1),
        at(128, 64, 0, 3, 2),
    ];
    assert!(check_layout(&good, 192, 64).is_empty());
    // Overlap only while both alive: byte 64..128 and orders 1-1 shared.
    let overlap = [at(0, 128, 0, 1, 0), at(64, 64, 1, 2, 1)];
    assert_eq!(
        check_layout(&overlap, 128, 64),
        vec![LayoutProblem::Overlap { a: 0, b: 1 }]
    );
    // Adjacent byte ranges and disjoint lifetimes are fine; so is a zero-byte tensor.
    let fine = [at(0, 64, 0, 5, 0), at(64, 64, 0, 5, 1), at(0, 0, 0, 5, 2)];
    assert!(check_layout(&fine, 128, 64).is_empty());
    let shared = [at(0, 128, 0, 3, 7), at(64, 64, 0, 3, 7)];
    assert_eq!(
        check_layout(&shared, 128, 64),
        vec![LayoutProblem::GroupSplit { a: 0, b: 1 }]
    );
    let same_buffer = [at(0, 128, 0, 3, 7), at(0, 64, 0, 3, 7)];
    assert!(check_layout(&same_buffer, 128, 64).is_empty());
    let outside = [at(64, 128, 0, 0, 0)];
    assert_eq!(
        check_layout(&outside, 128, 64),
        vec![LayoutProblem::OutsideArena {
            item: 0,
            offset: 64,
            size: 128,
            arena_bytes: 128
        }]
    );
    let misaligned = [at(32, 64, 0, 0, 0)];
    assert_eq!(
        check_layout(&misaligned, 128, 64),
        vec![LayoutProblem::Misaligned {
            item: 0,
            offset: 32,
            alignment: 64
        }]
    );
    let empty = [at(0, 64, 3, 2, 0)];
    assert_eq!(
        check_layout(&empty, 64, 64),
        vec![LayoutProblem::EmptyInterval {
            item: 0,
            first: 3,
            last: 2
        }]
    );
    let problem = LayoutProblem::Overlap { a: 0, b: 1 }.to_string();
    assert_eq!(problem, "#0 and #1 overlap in bytes while both alive");
}

#[test]
fn the_checker_catches_a_plan_that_ignores_lifetimes() {
    for seed in 0..200u64 {
        let mut rng = Rng(seed);
        let (blocks, _) = random_blocks(&mut rng);
        let Some((i, j)) = (0..blocks.len())
            .flat_map(|i| (0..blocks.len()).map(move |j| (i, j)))
            .find(|&(i, j)| {
                i != j && blocks[i].size > 0 && blocks[j].size > 0 && blocks[i].meets(&blocks[j])
            })
        else {
            continue;
        };
        let mut layout = plan_offsets(Planner::GreedyBySize, &blocks).unwrap();
        layout.offsets[j] = layout.offsets[i];
        let problems = check_offsets(&blocks, &layout.offsets, layout.arena_bytes);
        assert!(
            problems
                .iter()
                .any(|p| matches!(*p, LayoutProblem::Overlap { a, b }
                    if (a, b) == (i, j) || (a, b) == (j, i))),
            "seed {seed}: {problems:?}"
        );
    }
    let blocks = [Block {
        size: 64,
        first: 0,
        last: 0,
        index: 0,
    }];
    assert_eq!(
        check_offsets(&blocks, &[], 64),
        vec![LayoutProblem::OffsetCount {
            blocks: 1,
            offsets: 0
        }]
    );
}
