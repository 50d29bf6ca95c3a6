//! Panic handler of the test guests: report the panic as a FAIL line, end the scenario and crash
//! the domain (`SHUTDOWN_crash`).

use core::panic::PanicInfo;
use core::sync::atomic::{AtomicBool, Ordering};

use crate::hypercall::{self, ShutdownReason};
use crate::{println, scenario};

/// Set by the first panic; a panic while reporting one goes straight to the crash.
static PANICKING: AtomicBool = AtomicBool::new(false);

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    if !PANICKING.load(Ordering::Relaxed) {
        PANICKING.store(true, Ordering::Relaxed);
        let message = info.message();
        match (scenario::name(), info.location()) {
            (Some(name), Some(at)) => println!("SCENARIO {name} FAIL panic: {message} at {at}"),
            (Some(name), None) => println!("SCENARIO {name} FAIL panic: {message}"),
            (None, Some(at)) => println!("GUEST PANIC: {message} at {at}"),
            (None, None) => println!("GUEST PANIC: {message}"),
        }
        if scenario::name().is_some() {
            scenario::end();
        }
    }
    hypercall::shutdown(ShutdownReason::Crash)
}
