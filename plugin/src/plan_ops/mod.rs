//! Nodes of tract's optimised plan that the plugin runs itself, where tract
//! 0.23.9's own eval takes a slow generic path inside the sandbox. Each
//! module swaps its nodes in place after optimisation and keeps tract's op
//! beside it for inputs it does not take.

pub mod binary;
pub mod gelu;
