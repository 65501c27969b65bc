//! The tickets role: a node with worker roles keeps one live staking ticket per role
//! (BUY_TICKET, SPEC section 3), bought again when the live one is due for renewal or when a
//! purchase never reached a block.
//!
//! Pure role logic: the node builds a [`TicketView`] of the chain at its tip ([`Tickets::view`])
//! and carries out the [`TicketAction`]s [`Tickets::tick`] returns, then tells the role what
//! became of them ([`Tickets::sent`]). Nothing here touches the chain lock, the pool or the
//! network, so the rules are tested on a hand-made view.

use crate::{config::Staking, NodeConfig};
use pouw_consensus::{tickets_of, Overlay, State, StateKey, StateValue};
use pouw_primitives::{Address, Amount, ChainSpec, Hash, Role, TxKind};
use std::collections::{HashMap, HashSet};

/// How the node stakes: its `[staking]` configuration on its chain, and the fee it pays.
#[derive(Clone, Copy)]
pub(crate) struct TicketRules<'a> {
    pub(crate) staking: &'a Staking,
    pub(crate) spec: &'a ChainSpec,
    pub(crate) fee: Amount,
}

impl<'a> TicketRules<'a> {
    pub(crate) fn new(config: &'a NodeConfig, fee: Amount) -> Self {
        Self { staking: &config.staking, spec: &config.spec, fee }
    }
}

/// What the tickets role sees: the chain at the tip and this node's own transactions.
pub(crate) struct TicketView<'a> {
    pub(crate) rules: TicketRules<'a>,
    /// The tip's height.
    pub(crate) height: u64,
    /// The node's balance at the tip.
    pub(crate) balance: Amount,
    /// Roles covered by a ticket that is not yet due for renewal.
    pub(crate) live: HashSet<Role>,
    /// Whether a purchase can reach a block now: peers are connected, or the node mines its
    /// own blocks.
    pub(crate) reach: bool,
    /// Whether one of our transactions is still on its way to a block (neither in one nor
    /// found invalid, `own_txs`).
    pub(crate) pending: &'a dyn Fn(&Hash) -> bool,
}

/// What the tickets role asks the node to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TicketAction {
    /// Sign and submit this purchase (a `TxKind::BuyTicket`) for `role`, then report its hash
    /// back with [`Tickets::sent`].
    Buy { role: Role, kind: TxKind },
}

/// The tickets role's state: its roles and the purchases on their way.
#[derive(Default)]
pub(crate) struct Tickets {
    roles: Vec<Role>,
    /// The purchase sent per role, until it is in a block or dropped as invalid.
    sent: HashMap<Role, Hash>,
    /// Roles whose ticket we could not afford (warned once).
    unfunded_warned: HashSet<Role>,
}

impl Tickets {
    pub(crate) fn new(roles: Vec<Role>) -> Self {
        Self { roles, ..Self::default() }
    }

    /// The roles of `me` covered at `height` by a ticket in `state` that is not yet due for
    /// renewal (`Staking::lasts`).
    pub(crate) fn live(
        &self,
        rules: &TicketRules<'_>,
        state: &State,
        me: &Address,
        height: u64,
    ) -> HashSet<Role> {
        let overlay = Overlay::new(state);
        self.roles
            .iter()
            .copied()
            .filter(|role| {
                tickets_of(&overlay, me, *role).iter().any(|id| {
                    matches!(state.get(&StateKey::Ticket(*id)),
                        Some(StateValue::Ticket(t)) if rules.staking.lasts(t.expires_at, height, rules.spec))
                })
            })
            .collect()
    }

    /// The purchases due: one per role with no live ticket and no purchase on its way, once a
    /// purchase can reach a block and the balance covers the stake and the fee.
    pub(crate) fn tick(&mut self, view: &TicketView<'_>) -> Vec<TicketAction> {
        if !view.reach {
            return Vec::new();
        }
        let mut actions = Vec::new();
        for role in &self.roles {
            let on_its_way = self.sent.get(role).is_some_and(|h| (view.pending)(h));
            if view.live.contains(role) || on_its_way {
                continue;
            }
            let TicketRules { staking, spec, fee } = view.rules;
            let stake = staking.stake_for(*role, spec);
            let needed = stake.checked_add(fee).unwrap_or(Amount::MAX);
            if view.balance < needed {
                if self.unfunded_warned.insert(*role) {
                    tracing::warn!(target: "node", role = ?role, balance = %view.balance, needed = %needed, "cannot stake a ticket: balance too low (the role stays idle)");
                }
                continue;
            }
            let kind = TxKind::BuyTicket {
                role: *role,
                stake,
                preferences: staking.preferences.clone(),
                expires_at: staking.expiry(view.height, spec),
            };
            actions.push(TicketAction::Buy { role: *role, kind });
        }
        actions
    }

    /// The purchase for `role` was submitted as transaction `hash`.
    pub(crate) fn sent(&mut self, role: Role, hash: Hash) {
        self.sent.insert(role, hash);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FEE: Amount = Amount(1_000);

    fn tickets(roles: &[Role]) -> Tickets {
        Tickets::new(roles.to_vec())
    }

    fn view<'a>(
        rules: (&'a Staking, &'a ChainSpec),
        pending: &'a dyn Fn(&Hash) -> bool,
        balance: Amount,
    ) -> TicketView<'a> {
        let rules = TicketRules { staking: rules.0, spec: rules.1, fee: FEE };
        TicketView { rules, height: 10, balance, live: HashSet::new(), reach: true, pending }
    }

    fn rich() -> Amount {
        Amount(u64::MAX / 2)
    }

    #[test]
    fn each_role_without_a_live_ticket_buys_one_at_the_configured_stake_and_life() {
        let (staking, spec) = (Staking::default(), ChainSpec::devnet());
        let r = (&staking, &spec);
        let mut t = tickets(&[Role::Miner, Role::Supervisor]);
        let nothing = |_: &Hash| false;
        let actions = t.tick(&view(r, &nothing, rich()));
        assert_eq!(
            actions,
            [Role::Miner, Role::Supervisor]
                .map(|role| TicketAction::Buy {
                    role,
                    kind: TxKind::BuyTicket {
                        role,
                        stake: staking.stake_for(role, &spec),
                        preferences: staking.preferences.clone(),
                        expires_at: staking.expiry(10, &spec),
                    },
                })
                .to_vec()
        );
    }

    #[test]
    fn a_purchase_on_its_way_is_not_repeated_and_one_that_was_dropped_is_bought_again() {
        let (staking, spec) = (Staking::default(), ChainSpec::devnet());
        let r = (&staking, &spec);
        let mut t = tickets(&[Role::Miner]);
        let first = Hash([1; 32]);
        t.sent(Role::Miner, first);
        let on_its_way = |h: &Hash| *h == first;
        assert!(t.tick(&view(r, &on_its_way, rich())).is_empty());
        // Found invalid or lost (no longer pending) and not live on chain: buy again.
        let gone = |_: &Hash| false;
        assert_eq!(t.tick(&view(r, &gone, rich())).len(), 1);
    }

    #[test]
    fn a_live_ticket_an_unreachable_network_or_a_short_balance_buys_nothing() {
        let (staking, spec) = (Staking::default(), ChainSpec::devnet());
        let r = (&staking, &spec);
        let mut t = tickets(&[Role::Evaluator]);
        let nothing = |_: &Hash| false;
        let mut live = view(r, &nothing, rich());
        live.live.insert(Role::Evaluator);
        assert!(t.tick(&live).is_empty());
        let mut alone = view(r, &nothing, rich());
        alone.reach = false;
        assert!(t.tick(&alone).is_empty());
        let stake = staking.stake_for(Role::Evaluator, &spec);
        let short = Amount(stake.0 + FEE.0 - 1);
        assert!(t.tick(&view(r, &nothing, short)).is_empty());
        // Exactly the stake and the fee is enough.
        assert_eq!(t.tick(&view(r, &nothing, Amount(stake.0 + FEE.0))).len(), 1);
    }
}
