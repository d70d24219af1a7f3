//! SIGINT/SIGTERM (stop and flush; a second and a third signal end the
//! process) and SIGHUP (reopen the logs), handled on a thread rather than
//! in a handler.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// What the signals ask for: `stop` (SIGINT/SIGTERM: stop reading and
/// flush everything; a second one gives the flush two more seconds, then
/// exits; a third exits at once) and `reopen` (SIGHUP:
/// close every log and open it again at its name, after logrotate moved
/// it). A thread waits for the signals, so no work runs in a handler.
pub struct SignalFlags {
    pub stop: Arc<AtomicBool>,
    pub reopen: Arc<AtomicBool>,
}

/// How long a second SIGINT/SIGTERM leaves the flush under way.
const FORCED_EXIT_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

pub fn install_signals(stopping: &'static str) -> SignalFlags {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let flags = SignalFlags {
        stop: Arc::new(AtomicBool::new(false)),
        reopen: Arc::new(AtomicBool::new(false)),
    };
    match signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) {
        Ok(mut signals) => {
            let stop = flags.stop.clone();
            let reopen = flags.reopen.clone();
            let _ = std::thread::Builder::new()
                .name("mailtap-signals".into())
                .spawn(move || {
                    let mut forced = false;
                    for sig in signals.forever() {
                        if sig == SIGHUP {
                            reopen.store(true, Ordering::SeqCst);
                            continue;
                        }
                        if !stop.swap(true, Ordering::SeqCst) {
                            eprintln!("mailtap: {stopping}");
                            continue;
                        }
                        if forced {
                            eprintln!("mailtap: third signal, exiting now");
                            std::process::exit(130);
                        }
                        // Second signal: the flush under way gets a last
                        // short chance, then the process ends anyway.
                        forced = true;
                        eprintln!(
                            "mailtap: second signal: exiting in {} s whether or not the flush is done (signal again to exit now)",
                            FORCED_EXIT_GRACE.as_secs()
                        );
                        let _ = std::thread::Builder::new().name("mailtap-forced-exit".into()).spawn(|| {
                            std::thread::sleep(FORCED_EXIT_GRACE);
                            eprintln!("mailtap: forced exit");
                            std::process::exit(130);
                        });
                    }
                });
        }
        Err(e) => eprintln!("mailtap: warning: cannot handle signals: {e}"),
    }
    flags
}
