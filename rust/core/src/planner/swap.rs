//! The swap schedule (`spec/swapping.md` §2–§6, `python/edgetrain/planning/swap.py`
//! `plan_swap`): for a chosen set of buffers and a lookahead, each swapped buffer's
//! resident segments, the resident arena and the swap file, placed by the same planners.
//!
//! The input is what the plan knows about each buffer ([`BufferFacts`]: size, interval,
//! the orders that use and change it, its lifespan), so the schedule is computed from
//! the same facts as the spec's and comes out field for field equal to
//! `SwapSchedule.to_json()` (`tests/swap_schedule.rs` replays
//! `tests/data/plans/swap_cases.json`; `tests/conformance/test_swap_schedule_core.py`
//! compares whole schedules). Which buffers to swap under a budget (`choose_swap`) stays
//! in the spec: the core computes the schedule of a choice.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::bounds::{live_bytes, lower_bound};
use super::{plan_offsets, Block, Planner, ALIGNMENT};
use crate::error::{invalid, Result};
use crate::program::SegmentExit;

/// How long a buffer lives (`spec/planning.md`): only `persistent` and `iteration`
/// matter to swapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Lifespan {
    /// Used only by forward steps.
    Forward,
    /// Written forward, kept until a backward step read it.
    ForwardToBackward,
    /// Born and dead in the backward pass.
    Backward,
    /// A result read after the last order: never swapped.
    Iteration,
    /// Kept across iterations (weights, optimizer state): lives in its slot between them.
    Persistent,
}

/// One buffer of the unswapped plan, in the plan's buffer order.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct BufferFacts {
    /// The buffer's name (its first member's).
    pub name: String,
    /// Aligned bytes of its block.
    pub size: usize,
    /// Bytes one transfer copies (its largest member, unaligned).
    pub nbytes: usize,
    /// The plan's interval `[first, last]`.
    pub first: usize,
    /// See `first`.
    pub last: usize,
    /// Every order some member reads or writes, ascending.
    pub uses: Vec<usize>,
    /// Orders that may change its bytes (`changes(B)` of the spec), ascending.
    pub changes: Vec<usize>,
    /// Its lifespan class.
    pub lifespan: Lifespan,
    /// Borrowed from another program (never swapped; a swap schedule refuses such plans).
    #[serde(default)]
    pub external: bool,
}

/// What to schedule.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct SwapRequest {
    /// Execution orders of the program (`E + 1`).
    pub orders: usize,
    /// Orders a read-in is issued before the segment's first use.
    pub lookahead: usize,
    /// The planner of the plan (`"greedy_by_size"`, ...).
    pub planner: String,
    /// Written-out segments keep their block one order longer, for the copy to run beside
    /// the next step (§3 "Held"); absent: true.
    #[serde(default = "overlapping")]
    pub overlap_writes: bool,
    /// The buffers to swap by name; absent: every swappable one.
    #[serde(default)]
    pub swapped: Option<Vec<String>>,
    /// The plan's buffers, in its buffer order.
    pub buffers: Vec<BufferFacts>,
}

/// A resident segment of a swapped buffer (`SwapSchedule.to_json()["segments"]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduledSegment {
    /// First resident order.
    pub start: usize,
    /// Last resident order (its last use).
    pub end: usize,
    /// The uses of its run.
    pub uses: Vec<usize>,
    /// Read from the slot before `start` (else born there).
    pub read_in: bool,
    /// What happens after `end`.
    pub exit: SegmentExit,
    /// Last order its arena block is reserved (`end + 1` for a write-out, at most `E`).
    pub held: usize,
    /// Byte offset in the resident arena.
    pub offset: usize,
    /// The buffer's aligned size.
    pub bytes: usize,
}

/// A swapped buffer's bytes in the swap file, reserved over `[first, last]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduledSlot {
    /// Byte offset in the file.
    pub offset: usize,
    /// Aligned bytes.
    pub bytes: usize,
    /// First order the slot is held.
    pub first: usize,
    /// Last order the slot is held.
    pub last: usize,
}

/// One order's transfers and residents (`SwapSchedule.to_json()["orders"]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderEvents {
    /// The order.
    pub order: usize,
    /// Buffers read in before the step runs.
    pub read_in: Vec<String>,
    /// Buffers written out after it.
    pub written_out: Vec<String>,
    /// Buffers dropped after it.
    pub dropped: Vec<String>,
    /// Every buffer with a block alive at this order, in block order.
    pub resident: Vec<String>,
    /// Bytes of those blocks.
    pub resident_bytes: usize,
}

/// The schedule, with the keys and values of `SwapSchedule.to_json()`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwapPlan {
    /// The lookahead scheduled for.
    pub lookahead: usize,
    /// The planner that placed the arena and the file.
    pub planner: String,
    /// Whether write-outs keep their block one order longer.
    pub overlap_writes: bool,
    /// [`ALIGNMENT`].
    pub alignment: usize,
    /// Bytes of the resident arena.
    pub resident_bytes: usize,
    /// The most bytes of resident blocks alive at one order.
    pub resident_lower_bound: usize,
    /// The first order reaching it.
    pub resident_peak_order: usize,
    /// Bytes of the swap file.
    pub swap_file_bytes: usize,
    /// Bytes copied to the file per iteration.
    pub bytes_written: usize,
    /// Bytes copied from the file per iteration.
    pub bytes_read: usize,
    /// The swapped buffers, in buffer order.
    pub swapped: Vec<String>,
    /// Offsets of the unswapped buffers in the resident arena.
    pub resident_offsets: BTreeMap<String, usize>,
    /// Each swapped buffer's segments.
    pub segments: BTreeMap<String, Vec<ScheduledSegment>>,
    /// Each swapped buffer's slot.
    pub slots: BTreeMap<String, ScheduledSlot>,
    /// Per order.
    pub orders: Vec<OrderEvents>,
}

fn overlapping() -> bool {
    true
}

fn refuse(what: &'static str, reason: String) -> crate::error::Error {
    invalid("plan_swap", what, reason)
}

/// Runs of uses: a new run starts where a use is at least `lookahead + 2` orders after
/// the previous one (then the buffer can be out for at least one order).
pub fn split_uses(uses: &[usize], lookahead: usize) -> Vec<Vec<usize>> {
    let mut runs: Vec<Vec<usize>> = Vec::new();
    for &k in uses {
        match runs.last_mut() {
            Some(run) if k - run[run.len() - 1] < lookahead + 2 => run.push(k),
            _ => runs.push(vec![k]),
        }
    }
    runs
}

/// Whether swapping can take `buffer` out of memory at some order (spec §2).
pub fn swappable(buffer: &BufferFacts, lookahead: usize) -> bool {
    if buffer.lifespan == Lifespan::Iteration || buffer.size == 0 || buffer.external {
        return false;
    }
    buffer.lifespan == Lifespan::Persistent || split_uses(&buffer.uses, lookahead).len() >= 2
}

/// The segments of a swapped buffer before placement (spec §3), `offset` left at 0.
fn segments(
    buffer: &BufferFacts,
    lookahead: usize,
    overlap_writes: bool,
    last_order: usize,
) -> Vec<ScheduledSegment> {
    let changes: BTreeSet<usize> = buffer.changes.iter().copied().collect();
    let persistent = buffer.lifespan == Lifespan::Persistent;
    let runs = split_uses(&buffer.uses, lookahead);
    let count = runs.len();
    runs.into_iter()
        .enumerate()
        .map(|(j, run)| {
            let dirty = run.iter().any(|k| changes.contains(k));
            let (start, read_in) = if j == 0 && !persistent {
                (run[0], false)
            } else {
                (run[0].saturating_sub(lookahead), true)
            };
            let exit = if persistent {
                if dirty {
                    SegmentExit::Write
                } else {
                    SegmentExit::Drop
                }
            } else if j == count - 1 {
                SegmentExit::Free
            } else if j == 0 || dirty {
                SegmentExit::Write
            } else {
                SegmentExit::Drop
            };
            let end = run[run.len() - 1];
            let held = if overlap_writes && exit == SegmentExit::Write {
                (end + 1).min(last_order)
            } else {
                end
            };
            ScheduledSegment {
                start,
                end,
                uses: run,
                read_in,
                exit,
                held,
                offset: 0,
                bytes: buffer.size,
            }
        })
        .collect()
}

fn validate(request: &SwapRequest) -> Result<()> {
    if request.orders == 0 {
        return Err(refuse("orders", "a program has at least one order".into()));
    }
    for (i, b) in request.buffers.iter().enumerate() {
        let bad = |reason: String| {
            Err(refuse(
                "buffers",
                format!("buffer {i} ('{}'): {reason}", b.name),
            ))
        };
        if b.size % ALIGNMENT != 0 {
            return bad(format!("size {} is not a multiple of {ALIGNMENT}", b.size));
        }
        if b.nbytes > b.size {
            return bad(format!(
                "{} bytes do not fit its block of {}",
                b.nbytes, b.size
            ));
        }
        if b.first > b.last || b.last >= request.orders {
            return bad(format!(
                "interval [{}, {}] outside orders 0..{}",
                b.first, b.last, request.orders
            ));
        }
        for list in [&b.uses, &b.changes] {
            if list.windows(2).any(|w| w[0] >= w[1]) || list.iter().any(|&k| k >= request.orders) {
                return bad("uses and changes must be ascending orders of the program".into());
            }
        }
        if b.external {
            return bad(
                "a swap schedule is made for a training program, not one borrowing weights".into(),
            );
        }
    }
    let mut names = BTreeSet::new();
    if let Some(dup) = request
        .buffers
        .iter()
        .find(|b| !names.insert(b.name.as_str()))
    {
        return Err(refuse(
            "buffers",
            format!("buffer name '{}' is repeated", dup.name),
        ));
    }
    Ok(())
}

/// The buffers to swap, in buffer order; refuses unknown and unswappable names.
fn chosen(request: &SwapRequest) -> Result<Vec<usize>> {
    let lookahead = request.lookahead;
    let Some(wanted) = &request.swapped else {
        return Ok((0..request.buffers.len())
            .filter(|&i| swappable(&request.buffers[i], lookahead))
            .collect());
    };
    let wanted: BTreeSet<&str> = wanted.iter().map(String::as_str).collect();
    let known: BTreeSet<&str> = request.buffers.iter().map(|b| b.name.as_str()).collect();
    let unknown: Vec<&str> = wanted.difference(&known).copied().collect();
    if !unknown.is_empty() {
        return Err(refuse(
            "swapped",
            format!("cannot swap {unknown:?}: not buffers of the program"),
        ));
    }
    let picked: Vec<usize> = (0..request.buffers.len())
        .filter(|&i| wanted.contains(request.buffers[i].name.as_str()))
        .collect();
    let refused: Vec<&str> = picked
        .iter()
        .filter(|&&i| !swappable(&request.buffers[i], lookahead))
        .map(|&i| request.buffers[i].name.as_str())
        .collect();
    if !refused.is_empty() {
        return Err(refuse(
            "swapped",
            format!(
                "cannot swap {refused:?} at lookahead {lookahead}: a result read after the \
                 last order, or no gap of lookahead + 2 orders between two uses"
            ),
        ));
    }
    Ok(picked)
}

/// [`plan_swap`] of a JSON [`SwapRequest`], answered as JSON (the bindings' entry).
pub fn plan_swap_json(request: &str) -> Result<String> {
    let request: SwapRequest =
        serde_json::from_str(request).map_err(|e| refuse("request", e.to_string()))?;
    let plan = plan_swap(&request)?;
    serde_json::to_string(&plan).map_err(|e| refuse("schedule", e.to_string()))
}

/// The schedule of `request` (spec §3–§6).
pub fn plan_swap(request: &SwapRequest) -> Result<SwapPlan> {
    validate(request)?;
    let planner: Planner = request.planner.parse()?;
    let swapped = chosen(request)?;
    let last_order = request.orders - 1;
    let mut segs: BTreeMap<usize, Vec<ScheduledSegment>> = swapped
        .iter()
        .map(|&i| {
            (
                i,
                segments(
                    &request.buffers[i],
                    request.lookahead,
                    request.overlap_writes,
                    last_order,
                ),
            )
        })
        .collect();

    // §4: one block per unswapped buffer, one per segment, in buffer order.
    let mut blocks = Vec::new();
    let mut owner: Vec<(usize, Option<usize>)> = Vec::new();
    for (i, b) in request.buffers.iter().enumerate() {
        match segs.get(&i) {
            Some(list) => {
                for (j, s) in list.iter().enumerate() {
                    blocks.push(Block {
                        size: b.size,
                        first: s.start,
                        last: s.held,
                        index: blocks.len(),
                    });
                    owner.push((i, Some(j)));
                }
            }
            None => {
                blocks.push(Block {
                    size: b.size,
                    first: b.first,
                    last: b.last,
                    index: blocks.len(),
                });
                owner.push((i, None));
            }
        }
    }
    let layout = plan_offsets(planner, &blocks)?;
    let bound = lower_bound(&blocks, request.orders)?;
    let live = live_bytes(&blocks, request.orders)?;
    let mut resident_offsets = BTreeMap::new();
    for (block, &(i, segment)) in owner.iter().enumerate() {
        let offset = layout.offsets[block];
        match segment {
            Some(j) => segs.get_mut(&i).expect("a swapped buffer")[j].offset = offset,
            None => {
                resident_offsets.insert(request.buffers[i].name.clone(), offset);
            }
        }
    }

    // §5: slots, in the swapped buffers' order.
    let slot_blocks: Vec<Block> = swapped
        .iter()
        .enumerate()
        .map(|(index, &i)| {
            let (b, list) = (&request.buffers[i], &segs[&i]);
            let (first, last) = if b.lifespan == Lifespan::Persistent {
                (0, last_order)
            } else {
                (list[0].end, list[list.len() - 1].uses[0])
            };
            Block {
                size: b.size,
                first,
                last,
                index,
            }
        })
        .collect();
    let slot_layout = plan_offsets(planner, &slot_blocks)?;
    let slots = swapped
        .iter()
        .zip(slot_blocks.iter().zip(&slot_layout.offsets))
        .map(|(&i, (block, &offset))| {
            let slot = ScheduledSlot {
                offset,
                bytes: block.size,
                first: block.first,
                last: block.last,
            };
            (request.buffers[i].name.clone(), slot)
        })
        .collect();

    let transfers = |counts: fn(&ScheduledSegment) -> bool| -> usize {
        swapped
            .iter()
            .map(|&i| request.buffers[i].nbytes * segs[&i].iter().filter(|s| counts(s)).count())
            .sum()
    };
    let bytes_written = transfers(|s| s.exit == SegmentExit::Write);
    let bytes_read = transfers(|s| s.read_in);
    let orders = order_events(request, &swapped, &segs, &blocks, &owner, &live);
    Ok(SwapPlan {
        lookahead: request.lookahead,
        planner: planner.name().to_string(),
        overlap_writes: request.overlap_writes,
        alignment: ALIGNMENT,
        resident_bytes: layout.arena_bytes,
        resident_lower_bound: bound.bytes,
        resident_peak_order: bound.peak_order,
        swap_file_bytes: slot_layout.arena_bytes,
        bytes_written,
        bytes_read,
        swapped: swapped
            .iter()
            .map(|&i| request.buffers[i].name.clone())
            .collect(),
        resident_offsets,
        segments: swapped
            .iter()
            .map(|&i| (request.buffers[i].name.clone(), segs[&i].clone()))
            .collect(),
        slots,
        orders,
    })
}

/// §6: per order, in buffer order (segments grouped by buffer, as the spec lists them).
fn order_events(
    request: &SwapRequest,
    swapped: &[usize],
    segs: &BTreeMap<usize, Vec<ScheduledSegment>>,
    blocks: &[Block],
    owner: &[(usize, Option<usize>)],
    live: &[usize],
) -> Vec<OrderEvents> {
    let name = |i: usize| request.buffers[i].name.clone();
    let mut events: Vec<OrderEvents> = (0..request.orders)
        .map(|order| OrderEvents {
            order,
            read_in: Vec::new(),
            written_out: Vec::new(),
            dropped: Vec::new(),
            resident: Vec::new(),
            resident_bytes: live[order],
        })
        .collect();
    for &i in swapped {
        for s in &segs[&i] {
            if s.read_in {
                events[s.start].read_in.push(name(i));
            }
            match s.exit {
                SegmentExit::Write => events[s.end].written_out.push(name(i)),
                SegmentExit::Drop => events[s.end].dropped.push(name(i)),
                SegmentExit::Free => {}
            }
        }
    }
    for (block, &(i, _)) in blocks.iter().zip(owner) {
        for event in &mut events[block.first..=block.last] {
            event.resident.push(name(i));
        }
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buffer(
        name: &str,
        uses: Vec<usize>,
        changes: Vec<usize>,
        lifespan: Lifespan,
    ) -> BufferFacts {
        BufferFacts {
            name: name.into(),
            size: 128,
            nbytes: 100,
            first: uses[0],
            last: uses[uses.len() - 1],
            uses,
            changes,
            lifespan,
            external: false,
        }
    }

    fn request(swapped: Option<Vec<String>>, lookahead: usize) -> SwapRequest {
        SwapRequest {
            orders: 10,
            lookahead,
            planner: "greedy_by_size".into(),
            overlap_writes: true,
            swapped,
            buffers: vec![
                buffer("act", vec![1, 8], vec![1], Lifespan::ForwardToBackward),
                buffer("w", vec![2, 7, 9], vec![9], Lifespan::Persistent),
                buffer("out", vec![5, 9], vec![5], Lifespan::Iteration),
            ],
        }
    }

    #[test]
    fn an_activation_is_written_after_its_forward_and_read_back_before_its_backward() {
        let plan = plan_swap(&request(Some(vec!["act".into()]), 1)).unwrap();
        let segs = &plan.segments["act"];
        assert_eq!(segs.len(), 2);
        assert_eq!(
            (segs[0].start, segs[0].end, segs[0].held, segs[0].read_in),
            (1, 1, 2, false)
        );
        assert_eq!(segs[0].exit, SegmentExit::Write);
        assert_eq!((segs[1].start, segs[1].end, segs[1].read_in), (7, 8, true));
        assert_eq!(segs[1].exit, SegmentExit::Free);
        assert_eq!((plan.bytes_written, plan.bytes_read), (100, 100));
        assert_eq!(plan.slots["act"].first, 1);
        assert_eq!(plan.slots["act"].last, 8);
        assert_eq!(plan.orders[7].read_in, vec!["act".to_string()]);
    }

    #[test]
    fn a_weight_lives_in_its_slot_between_iterations_and_only_dirty_runs_are_written() {
        let plan = plan_swap(&request(Some(vec!["w".into()]), 0)).unwrap();
        let exits: Vec<SegmentExit> = plan.segments["w"].iter().map(|s| s.exit).collect();
        assert_eq!(
            exits,
            vec![SegmentExit::Drop, SegmentExit::Drop, SegmentExit::Write]
        );
        assert!(plan.segments["w"].iter().all(|s| s.read_in));
        assert_eq!(plan.segments["w"][2].held, 9); // the last order at most
        assert_eq!((plan.slots["w"].first, plan.slots["w"].last), (0, 9));
    }

    #[test]
    fn results_and_unknown_buffers_are_refused_by_name() {
        let err = plan_swap(&request(Some(vec!["out".into()]), 0))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot swap [\"out\"]"), "{err}");
        let err = plan_swap(&request(Some(vec!["nope".into()]), 0))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not buffers of the program"), "{err}");
        let every = plan_swap(&request(None, 0)).unwrap();
        assert_eq!(every.swapped, vec!["act".to_string(), "w".to_string()]);
    }

    #[test]
    fn malformed_facts_are_refused_naming_the_buffer() {
        let mut bad = request(None, 0);
        bad.buffers[1].uses = vec![7, 2];
        let err = plan_swap(&bad).unwrap_err().to_string();
        assert!(err.contains("buffer 1 ('w')"), "{err}");
        let mut bad = request(None, 0);
        bad.buffers[0].size = 100;
        assert!(plan_swap(&bad).is_err());
    }
}
