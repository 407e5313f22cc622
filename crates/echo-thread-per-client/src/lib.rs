//! Placeholder: the thread-per-client model is being written.
