//! What the daemon tells its clients without being asked: progress of long work. The server
//! module turns these into the protocol's progress notifications.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Long work a workspace does in the background.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Task {
    /// Back-paraphrasing the workspace's units with the model: each paraphrase and its unit
    /// make a pair.
    Paraphrase,
    /// Building (or updating) the workspace's memory from its pairs.
    Memory,
    /// Training the workspace's adapter on its memory.
    Training,
}

impl Task {
    /// The progress title editors show for this task, e.g. "pema: building the memory".
    pub fn title(self) -> &'static str {
        match self {
            Task::Paraphrase => "pema: paraphrasing the workspace",
            Task::Memory => "pema: building the memory",
            Task::Training => "pema: training the adapter",
        }
    }
}

/// Where one run of a task is.
#[derive(Clone, Debug)]
pub enum Stage {
    /// The run has started.
    Begin,
    /// The run is under way.
    Report {
        /// How much is done, 0 to 100.
        percent: u32,
    },
    /// The run is over, however it ended.
    End,
}

/// One progress event of one run of a background task.
#[derive(Clone, Debug)]
pub struct Event {
    /// The root folder of the workspace the task works for.
    pub workspace: PathBuf,
    /// Unique per run of a task, so clients can tell two runs apart.
    pub id: u64,
    /// What the run does.
    pub task: Task,
    /// Where the run is.
    pub stage: Stage,
    /// A short line for people: what there is to do at the start ("40 units"), how far it got
    /// in a report ("12/40 units"), a summary at the end.
    pub message: String,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// One run of a task: begin on creation, throttled reports, end when dropped.
pub struct TaskProgress {
    tx: tokio::sync::broadcast::Sender<Event>,
    workspace: PathBuf,
    id: u64,
    task: Task,
    last: Option<Instant>,
    last_percent: u32,
    end_message: String,
}

impl TaskProgress {
    pub fn begin(
        tx: &tokio::sync::broadcast::Sender<Event>,
        workspace: PathBuf,
        task: Task,
        message: String,
    ) -> Self {
        let p = Self {
            tx: tx.clone(),
            workspace,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            task,
            last: None,
            last_percent: 0,
            end_message: "done".into(),
        };
        p.send(Stage::Begin, message);
        p
    }

    fn send(&self, stage: Stage, message: String) {
        // No receiver is fine: nobody is listening.
        let _ = self.tx.send(Event {
            workspace: self.workspace.clone(),
            id: self.id,
            task: self.task,
            stage,
            message,
        });
    }

    /// Reports at most five times a second, and whenever the percentage changes.
    pub fn report(&mut self, percent: u32, message: impl FnOnce() -> String) {
        let now = Instant::now();
        let due = self
            .last
            .is_none_or(|t| now - t >= Duration::from_millis(200));
        if due || percent != self.last_percent {
            self.last = Some(now);
            self.last_percent = percent;
            self.send(
                Stage::Report {
                    percent: percent.min(100),
                },
                message(),
            );
        }
    }

    pub fn finish(mut self, message: String) {
        self.end_message = message;
    }
}

impl Drop for TaskProgress {
    fn drop(&mut self) {
        let m = std::mem::take(&mut self.end_message);
        self.send(Stage::End, m);
    }
}
