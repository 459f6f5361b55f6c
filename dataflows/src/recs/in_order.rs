//! An operator that applies a collection's updates one time after the other: what the
//! recommendation views' own operators ([`super::top_k`], [`super::sessions`]) are built on.
//! Each keeps per key only what its output needs, where differential's `reduce` would keep and
//! re-read every input row of the key.
//!
//! The times are `seq`s, totally ordered: updates are held until the input frontier has passed
//! their time, then handed over a time at a time, in order.

use std::collections::BTreeMap;

use differential_dataflow::{AsCollection, ExchangeData, VecCollection};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::Operator;

/// An operator over `input`'s updates, exchanged by `route` (a hash: each key's at one
/// worker), that hands `logic` each time's updates once the frontier has passed it, in time order, and emits
/// the updates `logic` gives at that time.
pub(crate) fn in_time_order<'s, D, O, R, L>(
    input: VecCollection<'s, u64, D>,
    name: &str,
    route: R,
    mut logic: L,
) -> VecCollection<'s, u64, O>
where
    D: ExchangeData,
    O: ExchangeData,
    R: Fn(&D) -> u64 + 'static,
    L: FnMut(&mut Vec<(D, isize)>, &mut Vec<(O, isize)>) + 'static,
{
    let pact = Exchange::new(move |u: &(D, u64, isize)| route(&u.0));
    input
        .inner
        .unary_frontier::<CapacityContainerBuilder<Vec<(O, u64, isize)>>, _, _, _>(
            pact,
            name,
            move |_, _| {
                // Updates not applied yet, by time, and a capability for the least time.
                let mut pending: BTreeMap<u64, Vec<(D, isize)>> = BTreeMap::new();
                let mut held: Option<Capability<u64>> = None;
                let mut out: Vec<(O, isize)> = Vec::new();
                move |(input, frontier), output| {
                    input.for_each(|cap, data| {
                        if let Some(cap) = cap.retain_least(0)
                            && held.as_ref().is_none_or(|h| cap.time() < h.time())
                        {
                            held = Some(cap);
                        }
                        for (row, time, diff) in data.drain(..) {
                            pending.entry(time).or_default().push((row, diff));
                        }
                    });
                    while let Some(entry) = pending.first_entry() {
                        let time = *entry.key();
                        if frontier.less_equal(&time) {
                            break;
                        }
                        let Some(cap) = held.as_ref().map(|h| h.delayed(&time)) else {
                            break;
                        };
                        let mut updates = entry.remove();
                        logic(&mut updates, &mut out);
                        if !out.is_empty() {
                            let mut session = output.session(&cap);
                            for (update, diff) in out.drain(..) {
                                session.give((update, time, diff));
                            }
                        }
                    }
                    match pending.first_key_value() {
                        None => held = None,
                        Some((time, _)) => {
                            if let Some(h) = held.as_mut() {
                                h.downgrade(time);
                            }
                        }
                    }
                }
            },
        )
        .as_collection()
}
