//! TODO(helper): implement.
use super::Registry;

pub fn register(_r: &mut Registry) {}
