//! SIGHUP held back while sipfence starts. Its default action ends the process, and
//! loading millions of list entries takes a second: a reload asked for in that second
//! (a list job right after a restart, systemd's `ExecReload`) would kill the gateway,
//! and systemd does not restart a service that SIGHUP ended. Blocked from the first
//! instruction of `run` (every thread started afterwards inherits the mask), the signal
//! waits, pending, until the reload handler is in place; released then on the control
//! thread alone, it is delivered there and done as the first reload.

fn mask_sighup(how: libc::c_int) {
    // SAFETY: a sigset_t built by sigemptyset/sigaddset, passed by pointer to
    // pthread_sigmask, which changes only the calling thread's mask.
    unsafe {
        let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
        libc::sigemptyset(set.as_mut_ptr());
        libc::sigaddset(set.as_mut_ptr(), libc::SIGHUP);
        libc::pthread_sigmask(how, set.as_ptr(), std::ptr::null_mut());
    }
}

/// Holds SIGHUP pending on this thread and the threads it starts.
pub fn hold_sighup() {
    mask_sighup(libc::SIG_BLOCK);
}

/// Lets SIGHUP through to this thread (once a handler for it is installed).
pub fn release_sighup() {
    mask_sighup(libc::SIG_UNBLOCK);
}
