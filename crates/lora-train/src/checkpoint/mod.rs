//! Checkpoints a run can resume from exactly: directory layout, trainer state, and the
//! trainable parameters with their optimizer moments.

mod dir;
mod state;
pub(crate) mod tensors;

pub(crate) use dir::{check_output_dir, read_checkpoint, write_checkpoint};
pub use dir::{checkpoint_path, list_checkpoints, TRAINER_STATE_FILE, TRAINING_STATE_FILE};
pub use state::{fingerprint_difference, TrainerState, TRAINER_STATE_FORMAT};
pub(crate) use state::{finite_or_none, none_as_nan};
