//! Live lines written on a thread of their own. A reader slower than the calls (a terminal
//! that scrolls, a pipe into a slow tool) then never stalls the draining of the kernel's ring
//! buffer: statistics and the trace file still get every call, and when the reader falls more
//! than [`BACKLOG_BYTES`] behind, lines are left out and counted instead of calls being lost.

use std::{
    io::{self, Write},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        mpsc,
    },
    thread::{self, JoinHandle},
};

/// Bytes of lines waiting for the reader before new lines are left out.
pub const BACKLOG_BYTES: usize = 8 << 20;
/// How long the end of a trace waits for a stalled reader (a terminal on hold) to take the
/// lines still waiting; after that they are left out, and the tracer exits anyway.
const FINISH_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

/// What the lines thread shares with the trace.
#[derive(Debug, Default)]
struct Shared {
    /// Bytes sent and not written yet.
    backlog: AtomicUsize,
    /// Lines written.
    written: AtomicU64,
    /// The reader has gone (a closed pipe).
    closed: AtomicBool,
}

/// How the lines went, when the trace ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinesWritten {
    pub written: u64,
    /// Lines left out because the reader fell behind.
    pub skipped: u64,
}

/// The sending end of the lines thread.
pub struct LineOutput {
    sender: Option<mpsc::Sender<(String, u64)>>,
    thread: Option<JoinHandle<io::Result<()>>>,
    shared: Arc<Shared>,
    /// Lines handed to the thread, and left out.
    sent: u64,
    skipped: u64,
}

impl LineOutput {
    /// Starts the thread that writes to `out`.
    pub fn spawn(mut out: Box<dyn Write + Send>) -> io::Result<Self> {
        let (sender, receiver) = mpsc::channel::<(String, u64)>();
        let shared = Arc::new(Shared::default());
        let theirs = Arc::clone(&shared);
        let thread = thread::Builder::new()
            .name("koolkit-lines".into())
            .spawn(move || {
                for (text, lines) in receiver {
                    let result = out.write_all(text.as_bytes()).and_then(|()| out.flush());
                    theirs.backlog.fetch_sub(text.len(), Ordering::Relaxed);
                    match result {
                        Ok(()) => {
                            theirs.written.fetch_add(lines, Ordering::Relaxed);
                        }
                        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => {
                            theirs.closed.store(true, Ordering::Relaxed);
                            return Ok(());
                        }
                        Err(err) => {
                            theirs.closed.store(true, Ordering::Relaxed);
                            return Err(err);
                        }
                    }
                }
                Ok(())
            })?;
        Ok(Self {
            sender: Some(sender),
            thread: Some(thread),
            shared,
            sent: 0,
            skipped: 0,
        })
    }

    /// Hands `lines` lines of `text` to the thread, or leaves them out when it is too far
    /// behind.
    pub fn send(&mut self, text: String, lines: u64) {
        if self.is_closed() {
            return;
        }
        let backlog = self.shared.backlog.load(Ordering::Relaxed);
        // A reader that has caught up takes any batch, however large.
        if backlog > 0 && backlog + text.len() > BACKLOG_BYTES {
            self.skipped += lines;
            return;
        }
        self.shared.backlog.fetch_add(text.len(), Ordering::Relaxed);
        self.sent += lines;
        if let Some(sender) = &self.sender
            && sender.send((text, lines)).is_err()
        {
            self.shared.closed.store(true, Ordering::Relaxed);
        }
    }

    /// Leaves out one line without formatting it, when the writer is half a backlog behind
    /// (the reader stalled; a batch of lines is a few MiB, so `send` would soon leave whole
    /// batches out): formatting lines that are left out anyway is what makes a stalled
    /// reader slow the draining of the ring buffer. Whether the line was left out.
    pub fn skip_if_backed_up(&mut self) -> bool {
        if self.shared.backlog.load(Ordering::Relaxed) < BACKLOG_BYTES / 2 {
            return false;
        }
        self.skipped += 1;
        true
    }

    /// Whether the reader has gone (or writing failed): no more lines are taken.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Relaxed)
    }

    /// Waits (a while) for every line sent to be written; nothing more is taken after.
    pub fn finish(&mut self) -> io::Result<LinesWritten> {
        self.sender.take();
        let deadline = std::time::Instant::now() + FINISH_PATIENCE;
        if let Some(thread) = self.thread.take() {
            while !thread.is_finished() && std::time::Instant::now() < deadline {
                thread::sleep(std::time::Duration::from_millis(10));
            }
            if thread.is_finished() {
                thread
                    .join()
                    .map_err(|_| io::Error::other("the lines thread panicked"))??;
            } else {
                // Left blocked in its write; the process exit ends it.
                log::debug!("the reader of standard output is stalled; leaving its lines");
            }
        }
        let written = self.shared.written.load(Ordering::Relaxed);
        Ok(LinesWritten {
            written,
            // Lines sent but never written (a stalled or closed reader) count as left out.
            skipped: self.skipped + self.sent.saturating_sub(written),
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Mutex;

    use super::*;

    /// A writer tests can read back, or that is slow, or whose reader has gone.
    #[derive(Clone, Default)]
    pub struct TestOutput {
        pub bytes: Arc<Mutex<Vec<u8>>>,
        pub closed: bool,
        pub slow: bool,
    }

    impl Write for TestOutput {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            if self.closed {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
            if self.slow {
                thread::sleep(std::time::Duration::from_millis(50));
            }
            self.bytes.lock().unwrap().extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_slow_reader_costs_lines_not_calls() {
        let slow = TestOutput {
            slow: true,
            ..TestOutput::default()
        };
        let mut output = LineOutput::spawn(Box::new(slow.clone())).unwrap();
        let line = "x".repeat(1 << 20);
        for _ in 0..20 {
            output.send(line.clone(), 1);
        }
        let written = output.finish().unwrap();
        assert!(written.skipped > 0, "{written:?}");
        assert_eq!(written.written + written.skipped, 20);
        assert_eq!(
            slow.bytes.lock().unwrap().len() as u64,
            written.written << 20
        );
    }
}
