//! The worker's side of fault injection, whatever the job: misbehave for real (abort, segfault, exit, hang,
//! sleep, garbage on the channel, allocate without bound, leak).

use std::{thread, time::Duration};

use ipc_channel::ipc::IpcBytesSender;
use protocol::FaultKind;

/// Carries out `kind`. Faults that end the process or never return do not come back; the
/// others (slow, leak) return, and the chunk is computed as usual.
pub fn inject(kind: FaultKind, reply: &IpcBytesSender) {
    tracing::warn!(fault = %kind, "injecting fault");
    match kind {
        FaultKind::Crash => std::process::abort(),
        FaultKind::Segv => {
            crate::os::default_sigsegv();
            let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGSEGV);
            std::process::abort()
        }
        FaultKind::Exit => std::process::exit(protocol::exit::worker::INJECTED),
        FaultKind::Hang => loop {
            thread::sleep(Duration::from_secs(3600));
        },
        FaultKind::Slow => {
            thread::sleep(Duration::from_secs(10));
        }
        FaultKind::Garbage => {
            let _ =
                reply.send(b"\xde\xad\xbe\xef this is not a protocol message \xff\xff\xff\xff\xff");
            loop {
                thread::sleep(Duration::from_secs(3600));
            }
        }
        FaultKind::Oom => allocate_forever(),
        FaultKind::Leak => {
            let mut leak = vec![0u8; 64 << 20];
            touch(&mut leak);
            std::mem::forget(leak);
        }
    }
}

fn touch(buf: &mut [u8]) {
    for page in buf.chunks_mut(4096) {
        page[0] = 1;
    }
}

/// Allocates and touches memory until the allocator fails (the kernel limit set at spawn)
/// and aborts. Without a limit from the coordinator the worker sets one of its own first
/// (4 GiB), so that the fault can never take the whole machine.
fn allocate_forever() -> ! {
    use nix::sys::resource::{getrlimit, setrlimit, Resource, RLIM_INFINITY};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_DATA) {
        if soft == RLIM_INFINITY {
            let _ = setrlimit(Resource::RLIMIT_DATA, 4 << 30, hard);
        }
    }
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut block = vec![0u8; 32 << 20];
        touch(&mut block);
        hoard.push(block);
    }
}
