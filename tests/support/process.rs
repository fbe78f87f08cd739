//! Child processes: their output read on threads as it comes, and killed when a test ends.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Kills the child when the test ends, however it ends.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The lines of a child's stdout or stderr, read on a thread as they come. The thread reads
/// to the end even when nobody waits any more, so the child never blocks on a full pipe.
pub struct Lines {
    rx: mpsc::Receiver<String>,
    /// Every line received so far.
    pub seen: Vec<String>,
    /// Where `wait_for_next` goes on looking.
    next: usize,
}

impl Lines {
    pub fn of(output: impl Read + Send + 'static) -> Lines {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(output).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Lines { rx, seen: Vec::new(), next: 0 }
    }

    /// The first line, received already or within `timeout`, that contains `needle`.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> String {
        let i = self.find_from(0, needle, timeout);
        self.seen[i].clone()
    }

    /// The next line containing `needle` after the one the previous `wait_for_next` returned,
    /// received already or within `timeout`.
    pub fn wait_for_next(&mut self, needle: &str, timeout: Duration) -> String {
        let i = self.find_from(self.next, needle, timeout);
        self.next = i + 1;
        self.seen[i].clone()
    }

    /// From now on `wait_for_next` looks only at lines that arrive after this call.
    pub fn skip_seen(&mut self) {
        self.drain();
        self.next = self.seen.len();
    }

    /// Every line received so far.
    pub fn drain(&mut self) -> &[String] {
        while let Ok(line) = self.rx.try_recv() {
            self.seen.push(line);
        }
        &self.seen
    }

    fn find_from(&mut self, start: usize, needle: &str, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        let mut i = start;
        loop {
            while i < self.seen.len() {
                if self.seen[i].contains(needle) {
                    return i;
                }
                i += 1;
            }
            match self.rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!("no line with {needle:?} within {timeout:?}; got:\n{}", self.seen[start..].join("\n")),
            }
        }
    }
}

/// Reads a child's output to the end on a thread; the receiver gets it all when the child
/// closes it (exits).
pub fn read_to_end(mut output: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = output.read_to_string(&mut s);
        let _ = tx.send(s);
    });
    rx
}

/// `hallmonitor status --json --config CONFIG`, as a technician would ask, with the daemon's
/// runtime directory under `runtime_dir`; None while there is no snapshot.
pub fn status(config: &Path, runtime_dir: &Path) -> Option<serde_json::Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_hallmonitor"))
        .args(["status", "--json", "--config"])
        .arg(config)
        .env("XDG_RUNTIME_DIR", runtime_dir)
        .env_remove("RUNTIME_DIRECTORY")
        .output()
        .unwrap();
    out.status.success().then(|| serde_json::from_slice(&out.stdout).unwrap())
}
