//! Where a job's subtasks run: slots with slot sharing, spread across
//! workers. Pure: unit-tested without any process.
//!
//! As in Flink, one slot holds one parallel slice of the whole pipeline:
//! subtask `i` of every task goes to slot `i`, so a job needs as many slots
//! as its largest parallelism, and forward edges (equal parallelism) stay
//! inside one worker. Slots are taken from the workers in turn, so a job
//! spreads over as many workers as it can. A task that must write from one
//! process (a sink into one file) keeps all its subtasks with slot 0.

/// A worker's offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offer {
    /// The worker's id.
    pub worker: u32,
    /// Slots it has free.
    pub free: u32,
}

/// A task as the scheduler sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskNeeds {
    /// Its parallelism.
    pub parallelism: u32,
    /// All its subtasks must run in one process.
    pub single_process: bool,
}

/// Not enough slots.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the job needs {needed} task slot(s) but the cluster has {free} free (workers: {workers})")]
pub struct NotEnoughSlots {
    /// Slots the job needs.
    pub needed: u32,
    /// Free slots.
    pub free: u32,
    /// Workers registered.
    pub workers: usize,
}

/// Where a job's subtasks go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The worker of each slot the job takes (slot `i` holds subtask `i`
    /// of every task wide enough).
    pub slots: Vec<u32>,
    /// `tasks[task][subtask]` is a worker id.
    pub tasks: Vec<Vec<u32>>,
}

/// Places every subtask.
pub fn place(tasks: &[TaskNeeds], offers: &[Offer]) -> Result<Placement, NotEnoughSlots> {
    place_by(tasks, offers, |o| (0, o.worker))
}

/// Places every subtask starting with the workers where `busy` (slots a
/// tenant already holds there, then slots taken by anyone) is smallest:
/// one tenant's jobs spread over the workers instead of piling up on the
/// first, so a runaway job of one tenant shares a worker with as few of
/// another's as it can.
pub fn place_spread(
    tasks: &[TaskNeeds],
    offers: &[Offer],
    busy: &std::collections::BTreeMap<u32, (u32, u32)>,
) -> Result<Placement, NotEnoughSlots> {
    place_by(tasks, offers, |o| (busy.get(&o.worker).copied().unwrap_or_default(), o.worker))
}

fn place_by<K: Ord>(
    tasks: &[TaskNeeds],
    offers: &[Offer],
    order: impl Fn(&Offer) -> K,
) -> Result<Placement, NotEnoughSlots> {
    let needed = tasks.iter().map(|t| t.parallelism).max().unwrap_or(0);
    let free: u32 = offers.iter().map(|o| o.free).sum();
    if needed > free || (needed > 0 && offers.is_empty()) {
        return Err(NotEnoughSlots { needed, free, workers: offers.len() });
    }
    let mut offers: Vec<Offer> = offers.to_vec();
    offers.sort_by_key(order);
    let mut slots = Vec::with_capacity(needed as usize);
    let mut turn = 0;
    let n = offers.len();
    while slots.len() < needed as usize {
        let o = &mut offers[turn % n];
        if o.free > 0 {
            o.free -= 1;
            slots.push(o.worker);
        }
        turn += 1;
    }
    let tasks = tasks
        .iter()
        .map(|t| {
            (0..t.parallelism as usize)
                .map(|i| if t.single_process { slots[0] } else { slots[i] })
                .collect()
        })
        .collect();
    Ok(Placement { slots, tasks })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenants_jobs_spread_over_the_workers() {
        let offers = [Offer { worker: 1, free: 4 }, Offer { worker: 2, free: 4 }];
        // The tenant holds a slot on worker 1: its next job goes to 2.
        let busy = [(1, (1, 1)), (2, (0, 3))].into_iter().collect();
        assert_eq!(place_spread(&[task(1)], &offers, &busy).unwrap().slots, vec![2]);
        // Even: the worker with fewer slots taken by anyone comes first.
        let busy = [(1, (0, 2)), (2, (0, 1))].into_iter().collect();
        assert_eq!(place_spread(&[task(1)], &offers, &busy).unwrap().slots, vec![2]);
        assert_eq!(place(&[task(1)], &offers).unwrap().slots, vec![1]);
    }

    fn task(parallelism: u32) -> TaskNeeds {
        TaskNeeds { parallelism, single_process: false }
    }

    #[test]
    fn slices_spread_over_workers_and_forward_edges_stay_together() {
        let offers = [Offer { worker: 7, free: 2 }, Offer { worker: 3, free: 2 }];
        let placed = place(&[task(4), task(4), task(2)], &offers).unwrap();
        assert_eq!(placed.slots, vec![3, 7, 3, 7]);
        let placed = placed.tasks;
        assert_eq!(placed[0], vec![3, 7, 3, 7]);
        // Subtask i of every task shares slot i.
        assert_eq!(placed[1], placed[0]);
        assert_eq!(placed[2], vec![3, 7]);
    }

    #[test]
    fn uneven_offers_fill_what_is_free() {
        let offers = [Offer { worker: 1, free: 3 }, Offer { worker: 2, free: 1 }];
        assert_eq!(place(&[task(4)], &offers).unwrap().tasks[0], vec![1, 2, 1, 1]);
    }

    #[test]
    fn a_single_process_task_stays_with_slot_zero() {
        let offers = [Offer { worker: 1, free: 2 }, Offer { worker: 2, free: 2 }];
        let sink = TaskNeeds { parallelism: 3, single_process: true };
        let placed = place(&[task(3), sink], &offers).unwrap();
        assert_eq!(placed.tasks[0], vec![1, 2, 1]);
        assert_eq!(placed.tasks[1], vec![1, 1, 1]);
        // The slots taken do not depend on which task is widest.
        assert_eq!(placed.slots, vec![1, 2, 1]);
        let wide_sink = TaskNeeds { parallelism: 4, single_process: true };
        let placed = place(&[task(2), wide_sink], &offers).unwrap();
        assert_eq!(placed.tasks[1], vec![1, 1, 1, 1]);
        assert_eq!(placed.slots, vec![1, 2, 1, 2]);
    }

    #[test]
    fn too_few_slots_is_an_error() {
        let offers = [Offer { worker: 1, free: 1 }, Offer { worker: 2, free: 0 }];
        assert_eq!(
            place(&[task(2)], &offers),
            Err(NotEnoughSlots { needed: 2, free: 1, workers: 2 })
        );
        assert_eq!(
            place(&[task(1)], &[]).unwrap_err().to_string(),
            "the job needs 1 task slot(s) but the cluster has 0 free (workers: 0)"
        );
    }
}
