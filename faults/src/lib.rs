//! The fault-injection suite lives in `tests/`: see the README's "Fault suite".
