//! A client's own starting weights (design/021): the task's definition names a safetensors
//! file by the BLAKE3 hash of its bytes (`Initializer::Weights`); every worker that trains
//! or replays the task from its first iteration receives the file, checks it here and starts
//! from the model it holds ([`crate::initial_state_with`]).

use pouw_consensus::pouw::{ml_specs, PouwError};
use pouw_ml::{Model, StartWeightsError};
use pouw_primitives::{Hash, TaskDefinition};

/// Why a task's start weights cannot be used. The file comes from the client or another
/// seat: a mismatch is the server's fault (ask another); a file that matches the hash but is
/// not a model of the task is the client's (the task cannot be worked on).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The task names no start weights, or a task with start weights was given none.
    #[error("{0}")]
    Missing(&'static str),
    /// The bytes are not the file the task names.
    #[error("the start weights hash to {got}, the task names {want}")]
    HashMismatch {
        /// What the definition names.
        want: Hash,
        /// What the bytes hash to.
        got: Hash,
    },
    /// The file the task names is not a model of the task (shapes, a NaN or infinite
    /// parameter, not a safetensors file as the export writes it).
    #[error(transparent)]
    Unusable(#[from] StartWeightsError),
    /// The task's definition cannot be laid out.
    #[error(transparent)]
    Task(#[from] PouwError),
}

impl StartError {
    /// Whether the bytes are simply not the task's file (the sender's fault, another source
    /// may serve the right one), rather than the task's own file being unusable.
    pub fn is_mismatch(&self) -> bool {
        matches!(self, Self::HashMismatch { .. })
    }
}

/// The start model of `definition` from the bytes of its start weights file: the bytes must
/// hash to the definition's `Initializer::Weights` and hold a model of the task (same shapes,
/// every parameter finite; [`pouw_ml::start_model_from_bytes`]).
pub fn start_model(definition: &TaskDefinition, bytes: &[u8]) -> Result<Model, StartError> {
    let want = definition
        .model
        .init
        .start_weights()
        .ok_or(StartError::Missing("the task names no start weights"))?;
    let got = Hash::digest(bytes);
    if got != want {
        return Err(StartError::HashMismatch { want, got });
    }
    let (spec, _) = ml_specs(definition)?;
    Ok(pouw_ml::start_model_from_bytes(&spec, bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{initial_state, initial_state_with};
    use pouw_primitives::Initializer;

    fn task_with(init: Initializer) -> TaskDefinition {
        let spec = pouw_primitives::ChainSpec::devnet();
        let mut t = pouw_consensus::pouw::filler_task(&spec, &Hash::ZERO).1;
        t.model.init = init;
        t
    }

    #[test]
    fn a_task_with_start_weights_starts_from_them_and_from_nothing_else() {
        let plain = task_with(Initializer::Xavier);
        let (spec, _) = ml_specs(&plain).unwrap();
        let mut given = Model::new(pouw_ml::ModelSpec { seed: 77, ..spec }).unwrap();
        given.params_mut()[0] = 0.5;
        let bytes = pouw_ml::to_safetensors(&given).unwrap();
        let task = task_with(Initializer::Weights(Hash::digest(&bytes)));
        let model = start_model(&task, &bytes).unwrap();
        assert_eq!(model.params(), given.params());
        let mut state = initial_state_with(&task, Some(&model)).unwrap();
        assert_eq!(state.model().params(), given.params());
        assert!(state.residual().iter().all(|&r| r == 0.0));
        let (start, _) = state.start_hashes();
        assert_eq!(start.0, model.hash().0, "the first iteration's start model is the client's");
        let fresh = initial_state(&plain).unwrap();
        assert_ne!(fresh.model().params(), given.params());

        // Without its weights the task cannot start (no silent fallback to an initialiser),
        // and a task without start weights takes none.
        let e = initial_state(&task).unwrap_err().to_string();
        assert!(e.contains("start weights"), "{e}");
        let e = initial_state_with(&plain, Some(&model)).unwrap_err().to_string();
        assert!(e.contains("start weights"), "{e}");
        assert!(start_model(&plain, &bytes).is_err());
    }

    #[test]
    fn wrong_or_unusable_start_weights_are_refused_with_what_is_wrong() {
        let plain = task_with(Initializer::Xavier);
        let (spec, _) = ml_specs(&plain).unwrap();
        let good = pouw_ml::to_safetensors(&Model::new(spec.clone()).unwrap()).unwrap();
        let task = task_with(Initializer::Weights(Hash::digest(&good)));
        // Bytes that are not the task's file: a mismatch (another source may serve it).
        let mut other = good;
        if let Some(b) = other.last_mut() {
            *b ^= 1;
        }
        let e = start_model(&task, &other).unwrap_err();
        assert!(e.is_mismatch(), "{e}");
        assert!(e.to_string().contains("hash to"), "{e}");
        // The task's own file, but not a model of it: unusable, named.
        let unusable = |bytes: Vec<u8>| {
            let t = task_with(Initializer::Weights(Hash::digest(&bytes)));
            let e = start_model(&t, &bytes).unwrap_err();
            assert!(!e.is_mismatch() && matches!(e, StartError::Unusable(_)), "{e}");
            e.to_string()
        };
        let mut nan = Model::new(spec.clone()).unwrap();
        nan.params_mut()[3] = f32::NAN;
        let e = unusable(pouw_ml::to_safetensors(&nan).unwrap());
        assert!(e.contains("parameter 3 is NaN"), "{e}");
        let mut wide_spec = spec;
        wide_spec.input_shape = vec![wide_spec.input_shape.iter().product::<u32>() + 1];
        let wide = Model::new(wide_spec).unwrap();
        let e = unusable(pouw_ml::to_safetensors(&wide).unwrap());
        assert!(e.contains("input width"), "{e}");
        let e = unusable(b"junk".to_vec());
        assert!(e.contains("cannot load"), "{e}");
        let e = unusable(Vec::new());
        assert!(e.contains("cannot load"), "{e}");
    }
}
