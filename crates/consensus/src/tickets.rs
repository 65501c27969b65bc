//! Staking tickets: buying, expiry at a fixed height, early release and confiscation.
//!
//! A ticket lives under these keys, written and removed together:
//! `Ticket(id)` (the record), `TicketExpiry { height, ticket }` (so the block at the expiry
//! height finds it without a scan), `OwnerTicket { owner, role, ticket }` (a worker's
//! tickets) and, while no task has selected it, `FreeTicket { role, ticket }` (the pool the
//! selection draws from). A selected ticket leaves the free pool and is bound to one task
//! until the task ends, when it is released (stake back to the owner) or confiscated; the
//! selection only takes tickets that outlive the task's finalisation deadline, so a bound
//! ticket never reaches its expiry height. While the ticket exists its stake is counted in
//! [`crate::State::total_value`]; it leaves either back to the owner (expiry, release) or to
//! the caller (confiscation), never both.

use crate::{
    state::{Overlay, StateKey, StateValue, Ticket},
    ConsensusError,
};
use pouw_primitives::{Address, Hash, Role};

const LOWEST: Hash = Hash([0; 32]);
const HIGHEST: Hash = Hash([0xff; 32]);

/// Stores a new ticket (the stake must already have been debited from the owner).
pub(crate) fn insert_ticket(overlay: &mut Overlay<'_>, id: Hash, ticket: Ticket) {
    overlay.set(
        StateKey::TicketExpiry { height: ticket.expires_at, ticket: id },
        Some(StateValue::Marker),
    );
    overlay.set(
        StateKey::OwnerTicket { owner: ticket.owner, role: ticket.role, ticket: id },
        Some(StateValue::Marker),
    );
    overlay.set(StateKey::FreeTicket { role: ticket.role, ticket: id }, Some(StateValue::Marker));
    overlay.set(StateKey::Ticket(id), Some(StateValue::Ticket(ticket)));
}

/// Takes a ticket out of the free pool (it was selected for a task).
pub(crate) fn bind_ticket(overlay: &mut Overlay<'_>, role: Role, id: &Hash) {
    overlay.set(StateKey::FreeTicket { role, ticket: *id }, None);
}

/// The free (selectable) tickets of `role`, in id order.
pub(crate) fn free_tickets(overlay: &Overlay<'_>, role: Role) -> Vec<Hash> {
    overlay
        .range_keys_inclusive(
            &StateKey::FreeTicket { role, ticket: LOWEST },
            &StateKey::FreeTicket { role, ticket: HIGHEST },
        )
        .into_iter()
        .filter_map(|k| match k {
            StateKey::FreeTicket { ticket, .. } => Some(ticket),
            _ => None,
        })
        .collect()
}

/// Removes a ticket and its index entries, returning it; its stake is now held by nobody, so
/// the caller must move it somewhere (see [`release_ticket`], [`confiscate_ticket`]).
fn remove_ticket(overlay: &mut Overlay<'_>, id: &Hash) -> Result<Ticket, ConsensusError> {
    let ticket = overlay.ticket(id).ok_or(ConsensusError::UnknownTicket(*id))?;
    overlay.set(StateKey::Ticket(*id), None);
    overlay.set(StateKey::TicketExpiry { height: ticket.expires_at, ticket: *id }, None);
    overlay
        .set(StateKey::OwnerTicket { owner: ticket.owner, role: ticket.role, ticket: *id }, None);
    overlay.set(StateKey::FreeTicket { role: ticket.role, ticket: *id }, None);
    Ok(ticket)
}

/// Removes a ticket and credits its stake back to its owner (expiry, or an early return).
pub fn release_ticket(overlay: &mut Overlay<'_>, id: &Hash) -> Result<Ticket, ConsensusError> {
    let ticket = remove_ticket(overlay, id)?;
    overlay.credit(&ticket.owner, ticket.stake)?;
    Ok(ticket)
}

/// Removes a ticket and returns it *without* paying the stake to anyone: the caller must add
/// `ticket.stake` to the pot it pays out (ChargeForTask does), or money would vanish.
pub fn confiscate_ticket(overlay: &mut Overlay<'_>, id: &Hash) -> Result<Ticket, ConsensusError> {
    remove_ticket(overlay, id)
}

/// Releases every ticket whose `expires_at` is `height`; run at the start of the block at
/// `height`, so a ticket is usable in blocks `created_at..expires_at` and not in
/// `expires_at` itself. Returns the released ids.
pub fn expire_tickets(overlay: &mut Overlay<'_>, height: u64) -> Result<Vec<Hash>, ConsensusError> {
    let ids: Vec<Hash> = overlay
        .range_keys_inclusive(
            &StateKey::TicketExpiry { height, ticket: LOWEST },
            &StateKey::TicketExpiry { height, ticket: HIGHEST },
        )
        .into_iter()
        .filter_map(|k| match k {
            StateKey::TicketExpiry { ticket, .. } => Some(ticket),
            _ => None,
        })
        .collect();
    for id in &ids {
        release_ticket(overlay, id)?;
    }
    Ok(ids)
}

/// The ids of `owner`'s tickets for `role`, in id order.
pub fn tickets_of(overlay: &Overlay<'_>, owner: &Address, role: Role) -> Vec<Hash> {
    overlay
        .range_keys_inclusive(
            &StateKey::OwnerTicket { owner: *owner, role, ticket: LOWEST },
            &StateKey::OwnerTicket { owner: *owner, role, ticket: HIGHEST },
        )
        .into_iter()
        .filter_map(|k| match k {
            StateKey::OwnerTicket { ticket, .. } => Some(ticket),
            _ => None,
        })
        .collect()
}
