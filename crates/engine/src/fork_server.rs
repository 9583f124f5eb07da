//! The coordinator's side of the fork server: the worker binary started once per run with
//! `--fork-server` (see the runtime's `fork_server`), which has loaded GDAL and its drivers
//! and forks each worker and each replacement in a few milliseconds instead of the ~45 an
//! exec with GDAL's load costs.
//!
//! Who waits for a forked worker: the coordinator. The fork server forks twice and its
//! intermediate child exits at once, so the worker is reparented to the nearest child
//! subreaper among its ancestors: this process, made one before the fork server starts.
//! The coordinator then waits for the worker and reads its exit status exactly as for a
//! spawned one, and the worker's parent-death signal (set after the reparenting) is tied
//! to the coordinator. A fork server that reported exit statuses itself would make every
//! worker's supervision depend on one more process; here its death ends no worker (the
//! worker being forked is spawned by exec instead, and the next one starts another fork
//! server: see [`ForkServer::fork`]).
//!
//! The fork server runs under the same rules as a worker (its own process group, killed
//! with the thread that spawned it, the workers' environment) and is stopped at the end of
//! the run ([`ForkServer::stop`]). It can be started ahead of its run ([`prestart`]), so
//! that its load overlaps the coordinator's own start-up and its look at the input: then
//! it starts with the environment all the run's workers share (the job's name), and each
//! worker gets the rest (its cache size) with its request.

use std::{
    io::{BufRead, BufReader},
    os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd},
    process::{Child, Command, Stdio},
    sync::Mutex,
    time::{Duration, Instant},
};

use nix::sys::socket::{socketpair, AddressFamily, MsgFlags, SockFlag, SockType};
use protocol::{decode, encode, ForkRequest, ForkServerArgs, FromForkServer, PROTOCOL_VERSION};

use crate::{
    os::{self, ChildSetup},
    pool::PoolConfig,
};

/// How long the fork server may take to load and say it is ready, and to answer a request.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Fork servers started in a run beyond the first, after one failed (it was killed, say):
/// past these, every later worker is spawned by exec.
const MAX_RESTARTS: u32 = 3;

/// The run's fork server: started again after a failure, up to `MAX_RESTARTS` (3) times.
pub struct ForkServer {
    worker_bin: std::path::PathBuf,
    env: Vec<(String, String)>,
    state: Mutex<State>,
}

struct State {
    /// The process now running, if any.
    live: Option<Live>,
    restarts: u32,
}

/// One fork server process.
struct Live {
    /// `None` once hung up.
    control: Option<OwnedFd>,
    child: ServerProc,
    /// It said `Ready` (with our protocol version).
    ready: bool,
}

/// The fork server's process: the worker binary executed, or this process forked.
enum ServerProc {
    Exec(Child),
    /// A child of this process by its pid; `ended` once reaped.
    Forked {
        pid: u32,
        ended: Option<String>,
    },
}

impl ServerProc {
    fn id(&self) -> u32 {
        match self {
            ServerProc::Exec(c) => c.id(),
            ServerProc::Forked { pid, .. } => *pid,
        }
    }

    /// How it ended, if it did (reaped then); `Err`: it cannot be waited for.
    fn try_wait(&mut self) -> std::io::Result<Option<String>> {
        use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
        match self {
            ServerProc::Exec(c) => Ok(c.try_wait()?.map(|s| s.to_string())),
            ServerProc::Forked { ended: Some(e), .. } => Ok(Some(e.clone())),
            ServerProc::Forked { pid, ended } => {
                let got = waitpid(
                    nix::unistd::Pid::from_raw(*pid as i32),
                    Some(WaitPidFlag::WNOHANG),
                );
                let status = match got {
                    Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::EINTR) => return Ok(None),
                    Ok(WaitStatus::Exited(_, code)) => format!("exit status: {code}"),
                    Ok(WaitStatus::Signaled(_, sig, _)) => format!("signal: {sig}"),
                    Ok(other) => return Ok(Some(format!("{other:?}"))),
                    Err(e) => return Err(e.into()),
                };
                *ended = Some(status.clone());
                Ok(Some(status))
            }
        }
    }

    /// Kills it (and its process group) and waits for it.
    fn kill(&mut self) {
        if let ServerProc::Forked { ended: Some(_), .. } = self {
            return;
        }
        os::signal_group(self.id(), nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        match self {
            ServerProc::Exec(c) => {
                let _ = c.wait();
            }
            ServerProc::Forked { ended: Some(_), .. } => {}
            ServerProc::Forked { pid, ended } => {
                let _ = os::wait_pid(*pid);
                *ended = Some("killed".into());
            }
        }
    }
}

impl std::fmt::Debug for ForkServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ForkServer")
    }
}

/// Why the fork server could not fork a worker (the caller spawns it by exec instead).
#[derive(Debug, thiserror::Error)]
pub enum ForkError {
    #[error("the fork server failed {MAX_RESTARTS} times in this run")]
    Broken,
    #[error("the fork server's control socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("the fork server speaks protocol version {0}, this coordinator {PROTOCOL_VERSION}")]
    Version(u32),
    #[error("the fork server answered out of turn: {0}")]
    Garbage(String),
    #[error("the fork server could not fork: {0}")]
    Failed(String),
}

/// A fork server started ahead of its run by [`prestart`], until the run takes it.
static AHEAD: Mutex<Option<ForkServer>> = Mutex::new(None);

/// Starts the fork server of the coordinator's next run now, from the thread that will
/// spawn the workers (the main thread), so that its load overlaps whatever the coordinator
/// does before the run. `env`: what all the run's workers share. The run takes it if its
/// workers are of `worker_bin` ([`ForkServer::for_run`]); otherwise it ends with the
/// process. Failing to start it is no error (the run starts its own, or spawns by exec).
pub fn prestart(worker_bin: &std::path::Path, env: Vec<(String, String)>) {
    match ForkServer::start(worker_bin, env) {
        Ok(fs) => *AHEAD.lock().unwrap_or_else(|p| p.into_inner()) = Some(fs),
        Err(e) => tracing::info!("cannot start the fork server ahead of the run: {e}"),
    }
}

/// As [`prestart`], but the fork server is this process forked (see `os::fork_zygote`)
/// rather than `worker_bin` executed: ready at once, GDAL being loaded here already. For a
/// worker binary whose kernel this process has built in: `serve` runs that kernel's fork
/// server (`runtime::serve_forked`). Called while this process is single-threaded (before
/// its run starts any thread); otherwise, or if the fork fails, the fork server is executed
/// as by [`prestart`].
pub fn prestart_forked(
    worker_bin: &std::path::Path,
    env: Vec<(String, String)>,
    serve: fn(OwnedFd) -> !,
) {
    let live = match os::become_subreaper().and_then(|()| Live::fork_here(&env, serve)) {
        Ok(live) => live,
        Err(e) => {
            tracing::info!("cannot fork the fork server: {e}; executing it");
            return prestart(worker_bin, env);
        }
    };
    let fs = ForkServer::with(worker_bin, env, live);
    *AHEAD.lock().unwrap_or_else(|p| p.into_inner()) = Some(fs);
}

/// Ends a fork server started ahead of a run that never came (the coordinator stopped
/// before: a bad input, say): killed and waited for at once (it has no worker).
pub fn discard_prestarted() {
    let ahead = AHEAD.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(fs) = ahead {
        let st = fs.state.into_inner().unwrap_or_else(|p| p.into_inner());
        if let Some(mut live) = st.live {
            live.child.kill();
        }
    }
}

impl ForkServer {
    /// The fork server of the run whose workers `cfg` describes: the one [`prestart`]ed
    /// for the same worker binary, or a new one (from the thread that spawns the workers:
    /// its parent-death signal is tied to that thread). Does not wait for it to load: the
    /// first [`ForkServer::fork`] does.
    pub fn for_run(cfg: &PoolConfig) -> std::io::Result<ForkServer> {
        let ahead = AHEAD.lock().unwrap_or_else(|p| p.into_inner()).take();
        match ahead {
            Some(fs) if fs.worker_bin == cfg.worker_bin => Ok(fs),
            other => {
                if let Some(fs) = other {
                    fs.stop();
                }
                ForkServer::start(&cfg.worker_bin, cfg.env.clone())
            }
        }
    }

    fn start(
        worker_bin: &std::path::Path,
        env: Vec<(String, String)>,
    ) -> std::io::Result<ForkServer> {
        os::become_subreaper()?;
        let live = Live::start(worker_bin, &env)?;
        Ok(ForkServer::with(worker_bin, env, live))
    }

    fn with(worker_bin: &std::path::Path, env: Vec<(String, String)>, live: Live) -> ForkServer {
        ForkServer {
            worker_bin: worker_bin.to_path_buf(),
            env,
            state: Mutex::new(State {
                live: Some(live),
                restarts: 0,
            }),
        }
    }

    /// Forks a worker that connects to `req.connect`, with `shm` as its shared segment.
    /// Returns its pid (a child of this process) and the read end of its stderr. A fork
    /// server that fails is stopped, and the next call starts another (the caller spawns
    /// this worker by exec).
    pub fn fork(
        &self,
        req: &ForkRequest,
        shm: BorrowedFd<'_>,
    ) -> Result<(u32, OwnedFd), ForkError> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.live.is_none() {
            if st.restarts >= MAX_RESTARTS {
                return Err(ForkError::Broken);
            }
            st.restarts += 1;
            st.live = Some(Live::start(&self.worker_bin, &self.env)?);
        }
        let live = st.live.as_mut().expect("started above");
        let got = live.fork(req, shm);
        if got.is_err() {
            if let Some(dead) = st.live.take() {
                dead.stop();
            }
        }
        got
    }

    /// Asks the fork server to exit (its control socket closed) without waiting: its exit
    /// then overlaps the workers' ([`ForkServer::stop`] waits for it). It forks no more.
    pub fn hang_up(&self) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(live) = st.live.as_mut() {
            live.hang_up();
        }
        // No restart after this: the run is over.
        st.restarts = MAX_RESTARTS;
    }

    /// Stops the fork server (its live process: asked to exit, then waited for).
    pub fn stop(self) {
        let st = self.state.into_inner().unwrap_or_else(|p| p.into_inner());
        if let Some(live) = st.live {
            live.stop();
        }
    }
}

impl Live {
    fn start(worker_bin: &std::path::Path, env: &[(String, String)]) -> std::io::Result<Live> {
        let (ours, theirs) = control_pair()?;
        let args = ForkServerArgs {
            control_fd: theirs.as_raw_fd(),
        };
        // Executed through /proc/self/fd/N: the kernel names the process after the path's
        // last part ("N"), so that until it renames itself (first thing, but after the
        // dynamic loader's ~30 ms) no scan for processes named like the worker binary (a
        // supervisor's, a test's, an operator's pkill) takes it for a worker. Its command
        // line and /proc/PID/exe still name the binary.
        let exe = std::fs::File::open(worker_bin)?;
        let via_fd = format!("/proc/self/fd/{}", exe.as_raw_fd());
        let mut cmd = match std::path::Path::new(&via_fd).exists() {
            true => Command::new(&via_fd),
            false => Command::new(worker_bin),
        };
        std::os::unix::process::CommandExt::arg0(&mut cmd, worker_bin);
        cmd.args(args.to_args())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .env("RUST_BACKTRACE", "0");
        for (k, v) in env {
            cmd.env(k, v);
        }
        os::prepare(
            &mut cmd,
            ChildSetup {
                inherit: theirs.as_raw_fd(),
                data_limit: None,
            },
        );
        let mut child = cmd.spawn()?;
        drop((theirs, exe));
        if let Some(err) = child.stderr.take() {
            log_stderr(child.id(), err)?;
        }
        Ok(Live {
            control: Some(ours),
            child: ServerProc::Exec(child),
            ready: false,
        })
    }

    /// A fork server forked from this process (see `os::fork_zygote`), running `serve`.
    fn fork_here(env: &[(String, String)], serve: fn(OwnedFd) -> !) -> std::io::Result<Live> {
        let (ours, theirs) = control_pair()?;
        let (err_r, err_w) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)?;
        let pid = os::fork_zygote(os::Zygote {
            control: theirs,
            stderr: err_w,
            env: env.to_vec(),
            serve,
        })?;
        // Threads only now: the fork needed a single-threaded process.
        log_stderr(pid, std::fs::File::from(err_r))?;
        Ok(Live {
            control: Some(ours),
            child: ServerProc::Forked { pid, ended: None },
            ready: false,
        })
    }

    /// Stops the fork server: it ends when its control socket closes; past a short grace,
    /// it is killed. Waits for it, so that nothing outlives the run.
    fn stop(self) {
        let Live {
            control, mut child, ..
        } = self;
        drop(control);
        let give_up = Instant::now() + Duration::from_millis(500);
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) if Instant::now() >= give_up => return child.kill(),
                Ok(None) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
    }
}

impl Live {
    fn hang_up(&mut self) {
        self.control = None;
    }

    /// The control socket, unless hung up.
    fn control(&self) -> Result<BorrowedFd<'_>, ForkError> {
        self.control
            .as_ref()
            .map(|c| c.as_fd())
            .ok_or_else(|| ForkError::Failed("the fork server was asked to exit".into()))
    }

    fn fork(
        &mut self,
        req: &ForkRequest,
        shm: BorrowedFd<'_>,
    ) -> Result<(u32, OwnedFd), ForkError> {
        if !self.ready {
            match self.answer()? {
                FromForkServer::Ready { version } if version == PROTOCOL_VERSION => {}
                FromForkServer::Ready { version } => return Err(ForkError::Version(version)),
                other => return Err(ForkError::Garbage(format!("{other:?}"))),
            }
            self.ready = true;
        }
        let (stderr_r, stderr_w) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)?;
        os::send_with_fds(
            self.control()?,
            &encode(req),
            &[stderr_w.as_raw_fd(), shm.as_raw_fd()],
        )?;
        // The worker holds the write end now; ours would keep its stderr open past its exit.
        drop(stderr_w);
        match self.answer()? {
            FromForkServer::Forked { pid } => Ok((pid, stderr_r)),
            FromForkServer::Failed { error } => Err(ForkError::Failed(error)),
            other => Err(ForkError::Garbage(format!("{other:?}"))),
        }
    }

    /// The fork server's next message, within [`ANSWER_TIMEOUT`].
    fn answer(&mut self) -> Result<FromForkServer, ForkError> {
        let mut buf = [0u8; 4096];
        let n = loop {
            match nix::sys::socket::recv(self.control()?.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                Err(nix::errno::Errno::EINTR) => continue,
                other => break other.map_err(std::io::Error::from)?,
            }
        };
        if n == 0 {
            let status = self.child.try_wait().ok().flatten();
            return Err(ForkError::Io(std::io::Error::other(format!(
                "the fork server hung up ({})",
                status.unwrap_or_else(|| "still running".to_string())
            ))));
        }
        decode::<FromForkServer>(&buf[..n]).map_err(|e| ForkError::Garbage(e.to_string()))
    }
}

/// The control socket's two ends (ours with the answer timeout).
fn control_pair() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    let timeout = nix::sys::time::TimeVal::new(ANSWER_TIMEOUT.as_secs() as i64, 0);
    nix::sys::socket::setsockopt(&ours, nix::sys::socket::sockopt::ReceiveTimeout, &timeout)?;
    Ok((ours, theirs))
}

/// What the fork server `pid` says goes to the log (it says something only when it fails).
fn log_stderr(pid: u32, err: impl std::io::Read + Send + 'static) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("fork-server-stderr".into())
        .spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                tracing::info!(pid, "fork server: {line}");
            }
        })?;
    Ok(())
}
