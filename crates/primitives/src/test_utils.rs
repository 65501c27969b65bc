//! proptest strategies for every primitives type, and small fixtures (feature `test-utils`).
//!
//! Two kinds of generator:
//! - `any_*`: structurally arbitrary values (any bytes, any field values, signatures that do not
//!   verify), for codec round-trips;
//! - `signed_*` / [`valid_task`]: values that pass their own checks (real signatures, a task
//!   that validates), for the state transition.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use crate::{
    Activation, AdamDef, Address, Amount, Attestation, AttestationBody, Block, CompactTarget,
    DatasetDef, DatasetFormat, Deadlines, Hash, Header, Initializer, IterationBody,
    IterationMessage, Keypair, LayerDef, ModelDef, OptimizerDef, Payout, PouwProof, PublicKey,
    Role, Signature, TaskDefinition, TaskPreferences, TicketPreferences, Timestamp, Transaction,
    TxBody, TxKind, UpdateRuleDef, WorkersWanted, DATASET_SEGMENTS, F32, HEADER_VERSION,
};
use proptest::{collection::vec, prelude::*};

/// The test key `i` (deterministic).
pub fn key(i: usize) -> Keypair {
    Keypair::from_label(&format!("test-key-{i}"))
}

pub fn any_hash() -> impl Strategy<Value = Hash> {
    any::<[u8; 32]>().prop_map(Hash)
}

pub fn any_amount() -> impl Strategy<Value = Amount> {
    prop_oneof![Just(Amount::ZERO), Just(Amount::MAX), any::<u64>().prop_map(Amount)]
}

/// Any 32 bytes (most are not valid curve points; that is fine for codecs).
pub fn any_public_key() -> impl Strategy<Value = PublicKey> {
    prop_oneof![any::<[u8; 32]>().prop_map(PublicKey), (0usize..8).prop_map(|i| key(i).public())]
}

pub fn any_signature() -> impl Strategy<Value = Signature> {
    any::<[u8; 32]>().prop_flat_map(|a| {
        any::<[u8; 32]>().prop_map(move |b| {
            let mut s = [0u8; 64];
            s[..32].copy_from_slice(&a);
            s[32..].copy_from_slice(&b);
            Signature(s)
        })
    })
}

pub fn any_timestamp() -> impl Strategy<Value = Timestamp> {
    any::<u64>().prop_map(Timestamp)
}

pub fn any_compact_target() -> impl Strategy<Value = CompactTarget> {
    any::<u32>().prop_map(CompactTarget)
}

pub fn any_f32() -> impl Strategy<Value = F32> {
    any::<u32>().prop_map(F32)
}

pub fn any_role() -> impl Strategy<Value = Role> {
    prop_oneof![
        Just(Role::Miner),
        Just(Role::Supervisor),
        Just(Role::Evaluator),
        Just(Role::Verifier)
    ]
}

pub fn any_ticket_preferences() -> impl Strategy<Value = TicketPreferences> {
    (any::<bool>(), any::<u64>(), any_amount()).prop_map(|(has_gpu, max_params, min_fee)| {
        TicketPreferences { has_gpu, max_params, min_fee }
    })
}

pub fn any_payout() -> impl Strategy<Value = Payout> {
    (any_public_key(), any_amount()).prop_map(|(to, amount)| Payout { to, amount })
}

pub fn any_activation() -> impl Strategy<Value = Activation> {
    prop_oneof![
        Just(Activation::Relu),
        Just(Activation::Tanh),
        Just(Activation::Sigmoid),
        Just(Activation::None)
    ]
}

pub fn any_layer() -> impl Strategy<Value = LayerDef> {
    (any::<u32>(), any_activation())
        .prop_map(|(units, activation)| LayerDef::Dense { units, activation })
}

pub fn any_model() -> impl Strategy<Value = ModelDef> {
    (
        vec(any::<u32>(), 0..4),
        vec(any_layer(), 0..4),
        any::<u32>(),
        prop_oneof![Just(Initializer::Xavier), Just(Initializer::He)],
        any::<u64>(),
    )
        .prop_map(|(input_shape, layers, classes, init, seed)| ModelDef {
            input_shape,
            layers,
            classes,
            init,
            seed,
        })
}

pub fn any_optimizer() -> impl Strategy<Value = OptimizerDef> {
    let adam = || {
        (any_f32(), any_f32(), any_f32(), any_f32()).prop_map(
            |(beta1, beta2, epsilon, weight_decay)| AdamDef { beta1, beta2, epsilon, weight_decay },
        )
    };
    let rule = prop_oneof![
        Just(UpdateRuleDef::Sgd),
        adam().prop_map(UpdateRuleDef::Adam),
        adam().prop_map(UpdateRuleDef::AdamW),
    ];
    (any_f32(), any_f32(), any_f32(), any::<u32>(), any::<u32>(), rule).prop_map(
        |(learning_rate, momentum, tau, batch_size, epochs, rule)| OptimizerDef {
            learning_rate,
            momentum,
            tau,
            batch_size,
            epochs,
            rule,
        },
    )
}

pub fn any_dataset() -> impl Strategy<Value = DatasetDef> {
    (
        prop_oneof![Just(DatasetFormat::Idx), Just(DatasetFormat::Csv)],
        any::<u64>(),
        vec(any_hash(), 0..12),
        any::<u16>(),
        any::<u16>(),
    )
        .prop_map(|(format, samples, segment_hashes, test_permille, validation_permille)| {
            DatasetDef { format, samples, segment_hashes, test_permille, validation_permille }
        })
}

pub fn any_task() -> impl Strategy<Value = TaskDefinition> {
    (
        any_model(),
        any_optimizer(),
        any_dataset(),
        any::<[u16; 4]>(),
        (any::<bool>(), any_amount()),
        (any::<u64>(), any::<u64>()),
    )
        .prop_map(|(model, optimizer, dataset, w, (needs_gpu, min_stake), (t, e))| {
            TaskDefinition {
                model,
                optimizer,
                dataset,
                workers: WorkersWanted {
                    miners: w[0],
                    supervisors: w[1],
                    evaluators: w[2],
                    verifiers: w[1] % 8,
                    max_faulty: w[3],
                },
                preferences: TaskPreferences { needs_gpu, min_stake },
                deadlines: Deadlines { training_blocks: t, evaluation_blocks: e },
            }
        })
}

/// A small task that passes [`TaskDefinition::validate`], wanting `evaluators` evaluators.
pub fn valid_task(evaluators: u16) -> TaskDefinition {
    TaskDefinition {
        model: ModelDef {
            input_shape: vec![4],
            layers: vec![
                LayerDef::Dense { units: 8, activation: Activation::Relu },
                LayerDef::Dense { units: 3, activation: Activation::None },
            ],
            classes: 3,
            init: Initializer::Xavier,
            seed: 7,
        },
        optimizer: OptimizerDef {
            learning_rate: F32::new(0.1),
            momentum: F32::new(0.0),
            tau: F32::new(0.01),
            batch_size: 8,
            epochs: 1,
            rule: UpdateRuleDef::Sgd,
        },
        dataset: DatasetDef {
            format: DatasetFormat::Csv,
            samples: 100,
            segment_hashes: (0..DATASET_SEGMENTS as u8).map(|i| Hash::digest(&[i])).collect(),
            test_permille: 300,
            validation_permille: 0,
        },
        workers: WorkersWanted {
            miners: 1,
            supervisors: 1,
            evaluators,
            verifiers: 0,
            max_faulty: 0,
        },
        preferences: TaskPreferences::default(),
        deadlines: Deadlines { training_blocks: 100, evaluation_blocks: 100 },
    }
}

pub fn any_tx_kind() -> impl Strategy<Value = TxKind> {
    prop_oneof![
        (any_public_key(), any_amount()).prop_map(|(to, amount)| TxKind::Transfer { to, amount }),
        (any_task(), any_amount()).prop_map(|(task, fee)| TxKind::PayForTask { task, fee }),
        (any_role(), any_amount(), any_ticket_preferences(), any::<u64>()).prop_map(
            |(role, stake, preferences, expires_at)| TxKind::BuyTicket {
                role,
                stake,
                preferences,
                expires_at
            }
        ),
        (any_hash(), any::<u32>(), any_hash())
            .prop_map(|(task_id, slot, root)| TxKind::MessageHistory { task_id, slot, root }),
        (any_hash(), any_hash())
            .prop_map(|(task_id, model_hash)| TxKind::SubmitModel { task_id, model_hash }),
        (
            any_hash(),
            vec(any_public_key(), 0..4),
            vec(any_payout(), 0..4),
            vec(any_public_key(), 0..3)
        )
            .prop_map(|(task_id, ranking, payouts, confiscations)| TxKind::ChargeForTask {
                task_id,
                ranking,
                payouts,
                confiscations
            }),
        (any_hash(), any_public_key(), any_miner_evidence()).prop_map(
            |(task_id, miner, evidence)| TxKind::AccuseMiner { task_id, miner, evidence }
        ),
        (any_attestation(), any_header()).prop_map(|(attestation, header)| {
            TxKind::ChallengeAttestation { attestation, header: Box::new(header) }
        }),
        (any_hash(), any::<bool>())
            .prop_map(|(claim, guilty)| TxKind::JudgeAttestation { claim, guilty }),
    ]
}

pub fn any_tx_body() -> impl Strategy<Value = TxBody> {
    (any::<u64>(), any_public_key(), any::<u64>(), any_amount(), any_tx_kind()).prop_map(
        |(chain_id, sender, nonce, fee, kind)| TxBody { chain_id, sender, nonce, fee, kind },
    )
}

/// A transaction with an arbitrary (almost surely invalid) signature.
pub fn any_transaction() -> impl Strategy<Value = Transaction> {
    (any_tx_body(), any_signature()).prop_map(|(body, signature)| Transaction { body, signature })
}

/// A transaction correctly signed by test key `0..8` (the body's sender is set to the key).
pub fn signed_transaction() -> impl Strategy<Value = Transaction> {
    (0usize..8, any_tx_body()).prop_map(|(k, mut body)| {
        let key = key(k);
        body.sender = key.public();
        body.sign(&key)
    })
}

pub fn any_header() -> impl Strategy<Value = Header> {
    (
        (any::<u32>(), any::<u64>(), any_hash(), any_hash(), any_hash(), any_timestamp()),
        (any_compact_target(), any_public_key(), any_hash(), any_hash(), any_hash(), any_hash()),
        any_hash(),
    )
        .prop_map(
            |(
                (version, height, prev_hash, tx_root, state_root, timestamp),
                (target, miner, task_id, msg_hash, msg_history_root, nonce),
                attestation_root,
            )| Header {
                version,
                height,
                prev_hash,
                tx_root,
                attestation_root,
                state_root,
                timestamp,
                target,
                miner,
                task_id,
                msg_hash,
                msg_history_root,
                nonce,
            },
        )
}

pub fn any_iteration_body() -> impl Strategy<Value = IterationBody> {
    (
        (any_hash(), any_public_key(), any::<u32>(), any::<u64>(), any_hash(), any_hash()),
        (any_hash(), vec(any_hash(), 0..3), vec(any::<u32>(), 0..16), any::<u32>(), any::<u32>()),
        (any_hash(), any_hash()),
    )
        .prop_map(
            |(
                (task_id, miner, epoch, iteration, batch_hash, start_model_hash),
                (start_residual_hash, peer_msgs, map, loss, accuracy),
                (commitment, order_seed),
            )| IterationBody {
                task_id,
                miner,
                epoch,
                iteration,
                batch_hash,
                start_model_hash,
                start_residual_hash,
                peer_msgs,
                map,
                loss,
                accuracy,
                commitment,
                order_seed,
            },
        )
}

pub fn any_iteration_message() -> impl Strategy<Value = IterationMessage> {
    (any_iteration_body(), any_signature())
        .prop_map(|(body, signature)| IterationMessage { body, signature })
}

/// An AccuseMiner's evidence with arbitrary messages.
pub fn any_miner_evidence() -> impl Strategy<Value = crate::MinerEvidence> {
    prop_oneof![
        any_iteration_message()
            .prop_map(|m| crate::MinerEvidence::Flagged { message: Box::new(m) }),
        (any_iteration_message(), any_iteration_message()).prop_map(|(a, b)| {
            crate::MinerEvidence::Equivocation { first: Box::new(a), second: Box::new(b) }
        }),
    ]
}

/// An iteration message correctly signed by test key `0..8`.
pub fn signed_iteration_message() -> impl Strategy<Value = IterationMessage> {
    (0usize..8, any_iteration_body()).prop_map(|(k, mut body)| {
        let key = key(k);
        body.miner = key.public();
        body.sign(&key)
    })
}

/// An attestation with arbitrary fields and signature.
pub fn any_attestation() -> impl Strategy<Value = Attestation> {
    (any::<u64>(), any_hash(), any::<u64>(), any_public_key(), any::<bool>(), any_signature())
        .prop_map(|(chain_id, block, height, verifier, valid, signature)| Attestation {
            body: AttestationBody { chain_id, block, height, verifier, valid },
            signature,
        })
}

/// An attestation correctly signed by test key `0..8`.
pub fn signed_attestation() -> impl Strategy<Value = Attestation> {
    (0usize..8, any_attestation()).prop_map(|(k, a)| {
        let key = key(k);
        AttestationBody { verifier: key.public(), ..a.body }.sign(&key)
    })
}

pub fn any_block() -> impl Strategy<Value = Block> {
    (
        any_header(),
        any_signature(),
        proptest::option::of((any_iteration_message(), any_iteration_message())),
        vec(any_transaction(), 0..3),
        vec(any_attestation(), 0..3),
    )
        .prop_map(|(header, signature, proof, transactions, attestations)| Block {
            header,
            signature,
            proof: proof.map(|(winning, committing)| PouwProof { winning, committing }),
            transactions,
            attestations,
        })
}

/// A block whose structure is self-consistent: version, `tx_root` and `msg_hash` match its
/// contents, the iteration is by the header's miner for the header's task, and the miner
/// (test key `0..8`) signed the header. Height is at least 1.
pub fn signed_block() -> impl Strategy<Value = Block> {
    (
        0usize..8,
        any_header(),
        signed_iteration_message(),
        signed_iteration_message(),
        vec(signed_transaction(), 0..3),
        vec(signed_attestation(), 0..3),
    )
        .prop_map(
            |(k, mut header, mut iteration, mut committing, transactions, attestations)| {
                let key = key(k);
                iteration.body.miner = key.public();
                iteration = iteration.body.sign(&key);
                committing.body.miner = key.public();
                committing.body.task_id = iteration.body.task_id;
                committing = committing.body.sign(&key);
                header.version = HEADER_VERSION;
                header.height = header.height.max(1);
                header.miner = key.public();
                header.task_id = iteration.body.task_id;
                header.msg_hash = iteration.id();
                header.tx_root = Block::compute_tx_root(&transactions);
                header.attestation_root = Block::compute_attestation_root(&attestations);
                let mut block = Block {
                    header,
                    signature: Signature::default(),
                    proof: Some(PouwProof { winning: iteration, committing }),
                    transactions,
                    attestations,
                };
                block.sign(&key);
                block
            },
        )
}

/// An arbitrary address from a small pool, so that generated transactions collide.
pub fn pool_address(n: usize) -> impl Strategy<Value = Address> {
    (0..n).prop_map(|i| key(i).public())
}
