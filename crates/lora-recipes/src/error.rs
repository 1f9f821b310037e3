//! The error type of the recipes.

/// The error of the recipes: any error, shown to the user as its message (each names the flag,
/// file or value at fault).
pub type AnyError = Box<dyn std::error::Error>;
