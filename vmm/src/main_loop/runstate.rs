//! The VM's run state (QEMU's RunState) and the transitions allowed between states. The table
//! is data, modelled on QEMU's runstate_transitions_def for the states this VMM has.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RunState {
    /// Built, vCPUs not started yet (also after `destroy`, before `start`).
    Prelaunch,
    Running,
    Paused,
    /// Stopped for a debugger.
    Debug,
    /// Guest-initiated suspend (S3).
    Suspended,
    /// The guest shut down and the VM stays around (managed mode).
    Shutdown,
    /// A vCPU hit an error KVM could not handle.
    InternalError,
    GuestPanicked,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Prelaunch => "prelaunch",
            RunState::Running => "running",
            RunState::Paused => "paused",
            RunState::Debug => "debug",
            RunState::Suspended => "suspended",
            RunState::Shutdown => "shutdown",
            RunState::InternalError => "internal-error",
            RunState::GuestPanicked => "guest-panicked",
        }
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

use RunState::*;

/// Every legal (from, to) pair.
const TRANSITIONS: &[(RunState, RunState)] = &[
    (Prelaunch, Running),
    (Prelaunch, Paused),
    (Prelaunch, Shutdown),
    (Prelaunch, InternalError),
    (Running, Paused),
    (Running, Debug),
    (Running, Suspended),
    (Running, Shutdown),
    (Running, InternalError),
    (Running, GuestPanicked),
    (Running, Prelaunch),
    (Paused, Running),
    (Paused, Prelaunch),
    (Paused, Suspended),
    (Paused, Shutdown),
    (Debug, Running),
    (Debug, Prelaunch),
    (Debug, Shutdown),
    (Suspended, Running),
    (Suspended, Paused),
    (Suspended, Prelaunch),
    (Suspended, Shutdown),
    (Shutdown, Paused),
    (Shutdown, Prelaunch),
    (InternalError, Paused),
    (InternalError, Prelaunch),
    (InternalError, Shutdown),
    (GuestPanicked, Paused),
    (GuestPanicked, Prelaunch),
    (GuestPanicked, Shutdown),
];

pub fn transition_allowed(from: RunState, to: RunState) -> bool {
    TRANSITIONS.contains(&(from, to))
}

#[derive(Debug, PartialEq, Eq)]
pub struct IllegalTransition {
    pub from: RunState,
    pub to: RunState,
}

impl fmt::Display for IllegalTransition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid run state transition: '{}' -> '{}'",
            self.from, self.to
        )
    }
}

pub struct RunStateMachine {
    current: RunState,
}

impl Default for RunStateMachine {
    fn default() -> Self {
        RunStateMachine { current: Prelaunch }
    }
}

impl RunStateMachine {
    pub fn current(&self) -> RunState {
        self.current
    }

    /// Moves to `to`; staying in the same state is always allowed (and a no-op).
    pub fn set(&mut self, to: RunState) -> Result<RunState, IllegalTransition> {
        let from = self.current;
        if from != to && !transition_allowed(from, to) {
            return Err(IllegalTransition { from, to });
        }
        self.current = to;
        Ok(from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legal_paths() {
        let mut m = RunStateMachine::default();
        for to in [
            Running,
            Paused,
            Running,
            Shutdown,
            Prelaunch,
            Running,
            InternalError,
            Prelaunch,
        ] {
            m.set(to).unwrap_or_else(|e| panic!("{e}"));
        }
        assert_eq!(m.current(), Prelaunch);
        assert_eq!(m.set(Prelaunch), Ok(Prelaunch), "same state is fine");
    }

    #[test]
    fn illegal_transitions_are_refused() {
        let mut m = RunStateMachine::default();
        m.set(Running).unwrap();
        m.set(Shutdown).unwrap();
        let e = m.set(Running).unwrap_err();
        assert_eq!(
            e,
            IllegalTransition {
                from: Shutdown,
                to: Running
            }
        );
        assert_eq!(
            e.to_string(),
            "invalid run state transition: 'shutdown' -> 'running'"
        );
        assert_eq!(m.current(), Shutdown, "state unchanged");
        assert!(!transition_allowed(Prelaunch, Debug));
        assert!(!transition_allowed(InternalError, Running));
        assert!(!transition_allowed(Debug, Suspended));
    }

    #[test]
    fn table_has_no_duplicates_or_self_loops() {
        for (i, t) in TRANSITIONS.iter().enumerate() {
            assert_ne!(t.0, t.1);
            assert!(!TRANSITIONS[i + 1..].contains(t), "{t:?} twice");
        }
    }
}
