//! Placeholder: this lesson is being written.

/// Runs the lesson.
pub fn run() -> crate::Result {
    Err("this lesson is not written yet".into())
}
