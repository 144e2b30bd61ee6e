//! x86_64 boot-time machine state.
