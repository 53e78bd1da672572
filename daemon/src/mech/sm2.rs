//! SM2 (placeholder while being written).
use super::Registry;
/// Register SM2.
pub fn register(_r: &mut Registry) {}
