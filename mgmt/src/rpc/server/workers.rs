//! The worker pool (libvirt's virThreadPool): workers sleep on the `job` condition, take a
//! call, run it with no lock held, queue the reply on the client's tx and wake the event loop.
//! Priority workers take only priority calls, so a slow call cannot hold up e.g. destroy.

use std::sync::Arc;

use super::{Job, Shared};

pub(crate) fn spawn<D: Send + 'static>(shared: &Arc<Shared<D>>, priority: bool) {
    let worker_shared = shared.clone();
    let name = if priority {
        "mgmt-prio-worker"
    } else {
        "mgmt-worker"
    };
    match std::thread::Builder::new()
        .name(name.into())
        .spawn(move || run(&worker_shared, priority))
    {
        Ok(handle) => shared
            .worker_threads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(handle),
        Err(e) => {
            log::error!("cannot start a management worker: {e}");
            if !priority {
                shared.lock().workers -= 1;
            }
        }
    }
}

/// Waits for the next job; None when the server stops.
fn next_job<D: Send + 'static>(shared: &Shared<D>, priority: bool) -> Option<Job<D>> {
    let mut state = shared.lock();
    if !priority {
        state.idle_workers += 1;
    }
    let job = loop {
        if state.quit {
            break None;
        }
        if let Some(job) = state.prio_jobs.pop_front() {
            break Some(job);
        }
        if !priority {
            if let Some(job) = state.jobs.pop_front() {
                break Some(job);
            }
        }
        let condition = if priority {
            &shared.prio_job
        } else {
            &shared.job
        };
        state = condition.wait(state).unwrap_or_else(|p| p.into_inner());
    };
    if !priority {
        state.idle_workers -= 1;
    }
    job
}

fn run<D: Send + 'static>(shared: &Arc<Shared<D>>, priority: bool) {
    super::lower_thread_priority();
    crate::thread_hook::thread_started(if priority {
        "mgmt-prio-worker"
    } else {
        "mgmt-worker"
    });
    while let Some(job) = next_job(shared, priority) {
        let reply = shared.run_call(&job);
        let started = job.client.lock().push_reply(&job.frame.header, reply);
        shared.flush_reply(&job.client, started);
    }
}
