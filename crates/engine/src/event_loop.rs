//! The supervisor's one event loop. Every worker's channel sits in one `IpcReceiverSet` (an
//! epoll set), so a worker's reply wakes the supervisor's thread directly: one wake-up per
//! message, with no reader thread in between. The coordinator's own threads (sink, lanes,
//! memory sampler, signals, exit waiters, handshakes) send on an in-process queue through an
//! [`EventSender`], which rings a doorbell (an IPC channel in the same set) only when the
//! supervisor sleeps in the set: an event sent while it is awake costs no wake-up at all,
//! and a burst costs one. A *lazy* event (a chunk written) does not even ring when the
//! supervisor went to sleep saying it could wait for those: it is read at the next wake-up.
//!
//! Order: a worker's exit is reported by its waiter thread after `waitpid`, that is after the
//! kernel closed the worker's end of its channel, so everything the worker said is already
//! in the socket. When the queue yields an exit, the set is read once more (without
//! blocking) and its messages come before the queue's: a worker's last words come before
//! its exit, as they did when a reader thread forwarded them.
//!
//! A worker's channel leaves the set when it closes (reported as `Disconnected`), or is
//! silenced after garbage (the scheduler kills the process; its later bytes and its close
//! are dropped) or after its exit was handled.
//!
//! Timers are the caller's: [`EventLoop::next`] waits at most until the deadline it is given.
//!
//! Does not decide anything (the scheduler does) nor start or handshake workers (`pool`).

use std::{
    collections::{HashMap, VecDeque},
    io,
    sync::{
        atomic::{AtomicU8, Ordering},
        mpsc, Arc,
    },
    time::{Duration, Instant},
};

use ipc_channel::{
    ipc::{self, IpcReceiver, IpcReceiverSet, IpcSelectionResult, IpcSender},
    TrySelectError,
};

use crate::{
    pool,
    sched::{SchedEvent, WorkerKey},
    wire::WireBytes,
};

/// What the loop hands out: an event from one of the coordinator's threads, or what a
/// worker said (or that its channel closed).
pub enum Incoming<E> {
    Event(E),
    Worker(SchedEvent),
}

/// The loop is running: nobody rings.
const AWAKE: u8 = 0;
/// The loop is (about to be) blocked in the set: the next sender rings.
const ASLEEP: u8 = 1;
/// Blocked, and lazy events can wait for the next wake-up: only other events ring.
const ASLEEP_LAZY: u8 = 2;

/// The doorbell the senders share with the loop.
struct Doorbell {
    state: AtomicU8,
    bell: IpcSender<()>,
}

/// Sends events to the loop from any thread; cheap to clone.
pub struct EventSender<E> {
    queue: mpsc::Sender<E>,
    door: Arc<Doorbell>,
}

impl<E> Clone for EventSender<E> {
    fn clone(&self) -> Self {
        EventSender {
            queue: self.queue.clone(),
            door: self.door.clone(),
        }
    }
}

/// The loop is gone: the run is over.
#[derive(Debug)]
pub struct LoopGone;

impl<E> EventSender<E> {
    /// Queues `ev` and wakes the loop if it sleeps.
    pub fn send(&self, ev: E) -> Result<(), LoopGone> {
        self.queue.send(ev).map_err(|_| LoopGone)?;
        // Only the sender that finds the loop asleep rings; the loop resets the state when it
        // wakes and reads the queue after setting it, so no event is left unseen.
        if self.door.state.swap(AWAKE, Ordering::SeqCst) != AWAKE {
            self.ring()?;
        }
        Ok(())
    }

    /// Queues `ev`, waking the loop only if it did not say that such events can wait.
    pub fn send_lazy(&self, ev: E) -> Result<(), LoopGone> {
        self.queue.send(ev).map_err(|_| LoopGone)?;
        if self
            .door
            .state
            .compare_exchange(ASLEEP, AWAKE, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            self.ring()?;
        }
        Ok(())
    }

    fn ring(&self) -> Result<(), LoopGone> {
        // A failed ring means the loop (and its end of the bell) is gone.
        self.door.bell.send(()).map_err(|_| LoopGone)
    }
}

/// A worker's channel in the set.
struct Channel {
    key: WorkerKey,
    /// Garbage was read, or the worker's exit handled: what follows is dropped.
    silenced: bool,
}

pub struct EventLoop<E> {
    set: IpcReceiverSet,
    bell_id: u64,
    queue: mpsc::Receiver<E>,
    door: Arc<Doorbell>,
    channels: HashMap<u64, Channel>,
    ready: VecDeque<Incoming<E>>,
    /// Events that must come after every message a worker sent before them (its exit).
    after_workers: fn(&E) -> bool,
}

impl<E> EventLoop<E> {
    /// A loop with nothing to watch yet, and the sender that feeds it. `after_workers`
    /// picks the events that must come after everything the workers said before them.
    pub fn new(after_workers: fn(&E) -> bool) -> io::Result<(EventLoop<E>, EventSender<E>)> {
        let mut set = IpcReceiverSet::new()?;
        let (bell, bell_rx) = ipc::channel::<()>().map_err(io::Error::other)?;
        let bell_id = set.add(bell_rx)?;
        let (tx, queue) = mpsc::channel();
        let door = Arc::new(Doorbell {
            state: AtomicU8::new(AWAKE),
            bell,
        });
        let sender = EventSender {
            queue: tx,
            door: door.clone(),
        };
        let l = EventLoop {
            set,
            bell_id,
            queue,
            door,
            channels: HashMap::new(),
            ready: VecDeque::new(),
            after_workers,
        };
        Ok((l, sender))
    }

    /// Watches worker `key`'s channel (after its handshake): its replies come out of
    /// [`next`](Self::next) as scheduler events.
    pub fn add_worker(&mut self, key: WorkerKey, rx: IpcReceiver<WireBytes>) -> io::Result<()> {
        let id = self.set.add(rx)?;
        self.channels.insert(
            id,
            Channel {
                key,
                silenced: false,
            },
        );
        Ok(())
    }

    /// Drops whatever worker `key`'s channel still says (its exit has been handled). The
    /// set keeps the channel until it closes: ipc-channel cannot remove one.
    pub fn silence(&mut self, key: WorkerKey) {
        for c in self.channels.values_mut().filter(|c| c.key == key) {
            c.silenced = true;
        }
    }

    /// The next event, waiting until `deadline` at most (`None`: the deadline passed).
    /// `lazy_can_wait`: lazy events sent while the loop sleeps need not wake it.
    pub fn next(
        &mut self,
        deadline: Instant,
        lazy_can_wait: bool,
    ) -> io::Result<Option<Incoming<E>>> {
        loop {
            if let Some(x) = self.ready.pop_front() {
                return Ok(Some(x));
            }
            let now = Instant::now();
            if now >= deadline {
                // One look without waiting, so that a loop always behind its timers still
                // sees its events.
                self.fill(Duration::ZERO, lazy_can_wait)?;
                return Ok(self.ready.pop_front());
            }
            self.fill(deadline - now, lazy_can_wait)?;
        }
    }

    /// Reads what is there, or sleeps in the set up to `wait` for something to come.
    fn fill(&mut self, wait: Duration, lazy_can_wait: bool) -> io::Result<()> {
        let mut events: Vec<E> = self.queue.try_iter().collect();
        let mut looked = false;
        if events.is_empty() {
            let asleep = if lazy_can_wait { ASLEEP_LAZY } else { ASLEEP };
            self.door.state.store(asleep, Ordering::SeqCst);
            // An event sent before the state was set rang no bell: look once more.
            events.extend(self.queue.try_iter());
            if events.is_empty() {
                let got = if wait.is_zero() {
                    self.set.try_select()
                } else {
                    self.set.try_select_timeout(wait)
                };
                looked = true;
                self.door.state.store(AWAKE, Ordering::SeqCst);
                self.take(got)?;
                events.extend(self.queue.try_iter());
            } else {
                self.door.state.store(AWAKE, Ordering::SeqCst);
            }
        }
        // An exit must come after what its worker said: everything it sent is in the set's
        // sockets by now (the process is gone), so one more look finds it. Without an exit,
        // a look is due only if none was taken (the workers must not wait behind the queue).
        if !looked || events.iter().any(self.after_workers) {
            let got = self.set.try_select();
            self.take(got)?;
        }
        self.ready.extend(events.into_iter().map(Incoming::Event));
        Ok(())
    }

    fn take(&mut self, got: Result<Vec<IpcSelectionResult>, TrySelectError>) -> io::Result<()> {
        let results = match got {
            Ok(r) => r,
            Err(TrySelectError::Empty) => return Ok(()),
            Err(TrySelectError::IoError(e)) => return Err(io::Error::other(e)),
        };
        for r in results {
            match r {
                IpcSelectionResult::MessageReceived(id, _) if id == self.bell_id => {}
                IpcSelectionResult::MessageReceived(id, msg) => {
                    let Some(c) = self.channels.get_mut(&id) else {
                        continue;
                    };
                    if c.silenced {
                        continue;
                    }
                    let ev = match msg.to::<WireBytes>() {
                        Ok(bytes) => pool::reply_event(c.key, &bytes.0),
                        Err(e) => SchedEvent::Garbage {
                            key: c.key,
                            detail: e.to_string(),
                        },
                    };
                    // After garbage the stream means nothing: the worker is killed, and
                    // nothing more of it reaches the scheduler.
                    if matches!(ev, SchedEvent::Garbage { .. }) {
                        c.silenced = true;
                    }
                    self.ready.push_back(Incoming::Worker(ev));
                }
                IpcSelectionResult::ChannelClosed(id) if id == self.bell_id => {
                    return Err(io::Error::other("the event loop's doorbell closed"));
                }
                IpcSelectionResult::ChannelClosed(id) => {
                    if let Some(c) = self.channels.remove(&id) {
                        if !c.silenced {
                            self.ready
                                .push_back(Incoming::Worker(SchedEvent::Disconnected {
                                    key: c.key,
                                }));
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::thread;

    use protocol::{encode, Attempt, FromWorker, TaskId, TaskStats};

    use super::*;
    use crate::sched::WorkerId;

    fn key(i: u32) -> WorkerKey {
        WorkerKey {
            id: WorkerId(i),
            gen: 0,
        }
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(10)
    }

    /// A worker's channel as the handshake leaves it: the worker's raw sender, the
    /// coordinator's typed receiver.
    fn worker_channel() -> (ipc::IpcBytesSender, IpcReceiver<WireBytes>) {
        let (server, name) = ipc::IpcOneShotServer::<crate::wire::Bootstrap>::new().unwrap();
        let boot: IpcSender<protocol::Bootstrap> = IpcSender::connect(name).unwrap();
        let (to_tx, _) = ipc::bytes_channel().unwrap();
        let (from_tx, from_rx) = ipc::bytes_channel().unwrap();
        boot.send((to_tx, from_rx)).unwrap();
        let (_, (_, rx)) = server.accept().unwrap();
        (from_tx, rx)
    }

    fn done(task: u32) -> Vec<u8> {
        encode(&FromWorker::Done {
            task: TaskId(task),
            attempt: Attempt(1),
            stats: TaskStats::default(),
        })
    }

    #[test]
    fn events_from_threads_wake_the_loop_and_the_deadline_ends_the_wait() {
        let (mut l, tx) = EventLoop::<u32>::new(|_| false).unwrap();
        let t = thread::spawn(move || {
            for i in 0..1000 {
                tx.send(i).unwrap();
            }
        });
        let mut got = Vec::new();
        while got.len() < 1000 {
            match l.next(soon(), false).unwrap() {
                Some(Incoming::Event(i)) => got.push(i),
                _ => panic!("nothing but events was sent"),
            }
        }
        t.join().unwrap();
        assert_eq!(got, (0..1000).collect::<Vec<_>>());
        let t0 = Instant::now();
        assert!(l
            .next(t0 + Duration::from_millis(50), false)
            .unwrap()
            .is_none());
        assert!(t0.elapsed() >= Duration::from_millis(50));
    }

    /// Sends from another thread once the loop sleeps in `state`.
    fn send_when_asleep(tx: EventSender<u32>, state: u8, lazy: bool) -> thread::JoinHandle<()> {
        thread::spawn(move || {
            while tx.door.state.load(Ordering::SeqCst) != state {
                thread::yield_now();
            }
            if lazy {
                tx.send_lazy(1).unwrap();
            } else {
                tx.send(1).unwrap();
            }
        })
    }

    #[test]
    fn a_lazy_event_waits_for_the_next_wake_up_only_when_the_loop_said_so() {
        let (mut l, tx) = EventLoop::<u32>::new(|_| false).unwrap();
        // The loop can wait: the lazy event rings nothing, and is read at the deadline.
        let t = send_when_asleep(tx.clone(), ASLEEP_LAZY, true);
        let deadline = Instant::now() + Duration::from_millis(200);
        assert!(matches!(
            l.next(deadline, true).unwrap(),
            Some(Incoming::Event(1))
        ));
        assert!(Instant::now() >= deadline, "a lazy event woke the loop");
        t.join().unwrap();
        // An ordinary event wakes a loop that can wait.
        let t = send_when_asleep(tx.clone(), ASLEEP_LAZY, false);
        assert!(matches!(
            l.next(soon(), true).unwrap(),
            Some(Incoming::Event(1))
        ));
        t.join().unwrap();
        // A lazy event wakes a loop that cannot wait.
        let t = send_when_asleep(tx, ASLEEP, true);
        assert!(matches!(
            l.next(soon(), false).unwrap(),
            Some(Incoming::Event(1))
        ));
        t.join().unwrap();
    }

    #[test]
    fn worker_replies_garbage_and_close_become_scheduler_events() {
        let (mut l, _tx) = EventLoop::<()>::new(|_| false).unwrap();
        let (w0, rx0) = worker_channel();
        let (w1, rx1) = worker_channel();
        l.add_worker(key(0), rx0).unwrap();
        l.add_worker(key(1), rx1).unwrap();
        w0.send(&done(7)).unwrap();
        w1.send(b"\xde\xad not a message").unwrap();
        w1.send(&done(8)).unwrap();
        drop(w0);
        drop(w1);
        let mut got = Vec::new();
        while got.len() < 3 {
            match l.next(soon(), false).unwrap() {
                Some(Incoming::Worker(ev)) => got.push(ev),
                other => panic!("unexpected: {}", other.is_some()),
            }
        }
        // Worker 0: its chunk, then its close; worker 1: garbage, and nothing after it.
        assert!(got.iter().any(|e| matches!(e,
            SchedEvent::TaskDone { key: k, task, .. } if *k == key(0) && *task == TaskId(7))));
        assert!(got
            .iter()
            .any(|e| matches!(e, SchedEvent::Disconnected { key: k } if *k == key(0))));
        assert!(got
            .iter()
            .any(|e| matches!(e, SchedEvent::Garbage { key: k, .. } if *k == key(1))));
        let t0 = Instant::now();
        assert!(l
            .next(t0 + Duration::from_millis(20), false)
            .unwrap()
            .is_none());
    }

    #[test]
    fn a_workers_last_words_come_before_an_exit_sent_after_them() {
        let (mut l, tx) = EventLoop::<&'static str>::new(|e| *e == "exited").unwrap();
        let (w, rx) = worker_channel();
        l.add_worker(key(0), rx).unwrap();
        // As the waiter thread does: the worker spoke and died, then its exit is sent.
        w.send(&done(1)).unwrap();
        drop(w);
        tx.send("exited").unwrap();
        let first = l.next(soon(), false).unwrap();
        assert!(
            matches!(first, Some(Incoming::Worker(SchedEvent::TaskDone { .. }))),
            "the reply comes first"
        );
        let second = l.next(soon(), false).unwrap();
        assert!(matches!(
            second,
            Some(Incoming::Worker(SchedEvent::Disconnected { .. }))
        ));
        assert!(matches!(
            l.next(soon(), false).unwrap(),
            Some(Incoming::Event("exited"))
        ));
    }
}
