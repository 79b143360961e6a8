//! Page tokens: opaque to callers, a decimal offset or key inside.
