//! A function the embedding program runs at the start of each thread this crate spawns,
//! before the thread touches untrusted input: the VMM installs the thread's seccomp filter
//! there. It is given the thread's name. Unset (as in this crate's tests), nothing runs.

use std::sync::OnceLock;

static HOOK: OnceLock<fn(&'static str)> = OnceLock::new();

/// Sets the hook; only the first call counts.
pub fn set(hook: fn(&'static str)) {
    let _ = HOOK.set(hook);
}

/// Runs the hook for the calling thread, named `name`.
pub fn thread_started(name: &'static str) {
    if let Some(hook) = HOOK.get() {
        hook(name);
    }
}
