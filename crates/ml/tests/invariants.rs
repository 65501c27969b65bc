//! Properties of the iteration over random models, batches and peer maps.

use pouw_ml::{
    pack_entry, unpack_entry, Activation, Batch, Exec, IterationError, Model, ModelSpec,
    OptimizerSpec, Rng, TrainState,
};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn iteration_invariants(seed in any::<u64>(), tau_exp in 1u32..5, momentum in prop::sample::select(vec![0.0f32, 0.5]), peers in 0usize..3) {
        let tau = 10f32.powi(-(tau_exp as i32));
        let spec = ModelSpec::mlp(9, &[6], 3, Activation::Relu, seed);
        let opt = OptimizerSpec { learning_rate: 0.2, momentum, tau, batch_size: 5, epochs: 1 };
        let model = Model::new(spec).unwrap();
        let n = model.param_count();
        let mut state = TrainState::new(model, opt).unwrap();
        let mut rng = Rng::from_u64(seed ^ 1);
        for _ in 0..3 {
            let x = (0..5 * 9).map(|_| rng.uniform_sym(2.0)).collect();
            let y = (0..5).map(|_| rng.below(3) as u32).collect();
            let batch = Batch::new(x, y, 9).unwrap();
            let maps: Vec<Vec<u32>> = (0..peers)
                .map(|_| (0..10).map(|_| pack_entry(rng.below(n as u64) as u32, rng.below(2) == 0)).collect())
                .collect();
            let refs: Vec<&[u32]> = maps.iter().map(Vec::as_slice).collect();
            let before = state.clone();
            let out = state.iterate(Exec::SINGLE, &batch, &refs).unwrap();
            // Replay from the same start, rebuilt from its parts as a verifier would, gives the
            // same bits on another thread count.
            let mut replay = TrainState::from_parts(
                Model::from_params(before.model().spec().clone(), before.model().params().to_vec()).unwrap(),
                *before.optimizer(),
                before.residual().to_vec(),
                before.velocity().to_vec(),
            )
            .unwrap();
            prop_assert_eq!(&replay.iterate(Exec::new(3), &batch, &refs).unwrap(), &out);
            prop_assert_eq!(out.start_model_hash, before.model().hash());
            prop_assert_eq!(out.start_residual_hash, before.residual_hash());
            prop_assert_eq!(out.end_model_hash, state.model().hash());
            prop_assert_eq!(out.batch_hash, batch.hash());
            prop_assert_eq!(out.map_hash, pouw_ml::map_hash(&out.map));
            let idx: Vec<u32> = out.map.iter().map(|&e| unpack_entry(e).0).collect();
            prop_assert!(idx.windows(2).all(|w| w[0] < w[1]), "map not sorted");
            prop_assert!(idx.iter().all(|&i| (i as usize) < n));
            for (j, &r) in state.residual().iter().enumerate() {
                if idx.binary_search(&(j as u32)).is_err() {
                    prop_assert!(r.abs() <= tau, "unsent residual {} > tau", r);
                }
            }
            let a = out.accuracy();
            prop_assert!((0.0..=1.0).contains(&a) && out.loss().is_finite());
        }
        // An out-of-range peer index is an error, never a panic, and changes nothing.
        let before = state.clone();
        let x = vec![0.0; 9];
        let batch = Batch::new(x, vec![0], 9).unwrap();
        let bad = [pack_entry(n as u32, true)];
        let is_peer_index_error = matches!(state.iterate(Exec::SINGLE, &batch, &[&bad]), Err(IterationError::PeerIndex { .. }));
        prop_assert!(is_peer_index_error);
        prop_assert_eq!(state, before);
    }
}
