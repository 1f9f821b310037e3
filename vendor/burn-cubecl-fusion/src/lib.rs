#[macro_use]
extern crate derive_new;

pub mod optim;

mod base;

pub(crate) mod engine;
pub(crate) mod tune;

pub use base::*;
