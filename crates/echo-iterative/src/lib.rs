//! Placeholder: the iterative model is being written.
