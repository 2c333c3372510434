//! The whole process tree of one command, so that a timeout, a cancel or a shutdown ends all of
//! it. Killing the command's process group misses what left the group: a grandchild that called
//! `setsid` (a daemonizing tool, `setsid sleep 300 &`). So each command carries a tag of its own
//! in its environment, which its descendants inherit, and the tree is: the leader's process
//! group, the leader's descendants by parent links, and every process of this user whose
//! environment carries the tag.
//!
//! Out of reach: a descendant that both left the session and cleared its environment after its
//! parent exited. Only a cgroup per command would find that one.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

/// The environment variable that tags a command's processes.
pub const TAG_VAR: &str = "MCLI_RUN_TAG";

/// One command's tree: its tag, and its leader once it runs.
#[derive(Debug)]
pub struct Tree {
    tag: String,
    /// The first process, while it is not reaped: the root of the walk by parent links.
    leader: Option<Pid>,
    /// The leader's process group, signalled as a whole until the tree is let go.
    group: Option<Pid>,
}

impl Tree {
    /// A tree with a tag that no other command of any server shares: this process's id, a
    /// counter, and the time (pids are reused across restarts).
    pub fn new() -> Tree {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let tag = format!("{}.{}.{nanos}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        Tree { tag, leader: None, group: None }
    }

    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The command's first process, which leads its process group.
    pub fn set_leader(&mut self, pid: Option<Pid>) {
        (self.leader, self.group) = (pid, pid);
    }

    /// The command's first process, left in its caller's process group: the tree is found
    /// from it and by its tag, and no group is ever signalled (that would be the caller's).
    pub fn set_leader_in_callers_group(&mut self, pid: Option<Pid>) {
        (self.leader, self.group) = (pid, None);
    }

    /// Forgets the leader once it is reaped: its id may be reused from then on, so the walk by
    /// parent links stops (its children have a new parent by now anyway). Its group and the tag
    /// still find what it left behind.
    pub fn leader_reaped(&mut self) {
        self.leader = None;
    }

    /// Lets the tree go: nothing is signalled from now on (the group id may be reused once the
    /// group is empty).
    pub fn let_go(&mut self) {
        (self.leader, self.group) = (None, None);
        self.tag.clear();
    }

    /// Sends `signal` to every process of the tree; returns how many it found besides the
    /// leader's group.
    pub fn signal(&self, signal: Signal) -> usize {
        if let Some(group) = self.group {
            let _ = killpg(group, signal);
        }
        if self.tag.is_empty() {
            return 0;
        }
        let members = self.members();
        for pid in &members {
            let _ = kill(*pid, signal);
        }
        members.len()
    }

    /// The processes of the tree now, besides the leader's group.
    fn members(&self) -> Vec<Pid> {
        let processes = scan();
        let mut found: HashSet<i32> = HashSet::new();
        if let Some(leader) = self.leader {
            let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
            for process in &processes {
                children.entry(process.ppid).or_default().push(process.pid);
            }
            let mut stack = vec![leader.as_raw()];
            while let Some(pid) = stack.pop() {
                if found.insert(pid) {
                    stack.extend(children.get(&pid).into_iter().flatten());
                }
            }
        }
        let needle = format!("{TAG_VAR}={}", self.tag);
        for process in &processes {
            if !found.contains(&process.pid) && carries(process.pid, needle.as_bytes()) {
                found.insert(process.pid);
            }
        }
        // Never this process, whatever the scan says.
        found.remove(&(std::process::id() as i32));
        found.into_iter().map(Pid::from_raw).collect()
    }
}

impl Default for Tree {
    fn default() -> Self {
        Tree::new()
    }
}

struct Process {
    pid: i32,
    ppid: i32,
}

/// Every process now, with its parent.
fn scan() -> Vec<Process> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|entry| {
            let pid: i32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // The command name may hold spaces and parentheses: the fields start after the last `)`.
            let (_, rest) = stat.rsplit_once(") ")?;
            let ppid = rest.split(' ').nth(1)?.parse().ok()?;
            Some(Process { pid, ppid })
        })
        .collect()
}

/// Whether the environment of `pid` holds the entry `needle` (`NAME=value`).
fn carries(pid: i32, needle: &[u8]) -> bool {
    let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else { return false };
    environ.split(|b| *b == 0).any(|entry| entry == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_differ_and_the_tagged_environment_is_found() {
        let (a, b) = (Tree::new(), Tree::new());
        assert_ne!(a.tag(), b.tag());
        let mut child = std::process::Command::new("sleep").arg("30").env(TAG_VAR, a.tag()).spawn().unwrap();
        let pid = Pid::from_raw(child.id() as i32);
        assert!(a.members().contains(&pid));
        assert!(!b.members().contains(&pid));
        a.signal(Signal::SIGKILL);
        let status = child.wait().unwrap();
        assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(9));
    }
}
