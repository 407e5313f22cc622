//! Placeholder: the epoll model is being written.
