//! The checks live in `tests/`: see the README's "Containers", "Kubernetes (`deploy/`)" and
//! "API documents".
