//! Which of the node's containers are tasks, and of which task: read once per container from
//! its `config.json` labels (they never change), so that listing 100+ containers every 250 ms
//! reads only each one's `state.json`.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::path::Path;

use serde::Deserialize;

use super::task_spec::LABEL_TASK;

/// A task's container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskContainer {
    /// The container id (64 hex digits).
    pub id: String,
    /// Its name.
    pub name: String,
    /// The task it runs.
    pub task_id: String,
}

/// The part of `config.json` the index needs.
#[derive(Deserialize)]
struct Labels {
    name: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// Container id to its task (`None`: not a task, e.g. made by hand with `berth-agent run`).
#[derive(Debug, Default)]
pub struct Index {
    known: HashMap<String, Option<TaskContainer>>,
}

impl Index {
    /// Brings the index up to date with `containers_dir` (reading the labels of containers
    /// it has not seen, forgetting those that are gone) and returns every task container.
    pub fn refresh(&mut self, containers_dir: &Path) -> io::Result<Vec<TaskContainer>> {
        let mut present = Vec::new();
        for e in fs::read_dir(containers_dir)? {
            let Ok(name) = e?.file_name().into_string() else {
                continue;
            };
            if name.len() == 64 {
                present.push(name);
            }
        }
        let mut tasks = Vec::new();
        let mut known = HashMap::with_capacity(present.len());
        for id in present {
            let entry = match self.known.remove(&id) {
                Some(entry) => entry,
                None => match read_labels(&containers_dir.join(&id).join("config.json")) {
                    Some(l) => l.labels.get(LABEL_TASK).map(|task_id| TaskContainer {
                        id: id.clone(),
                        name: l.name,
                        task_id: task_id.clone(),
                    }),
                    // Being created (no config.json yet) or unreadable: looked at again next time.
                    None => continue,
                },
            };
            if let Some(t) = &entry {
                tasks.push(t.clone());
            }
            known.insert(id, entry);
        }
        self.known = known;
        Ok(tasks)
    }

    /// Records a container just created for a task.
    pub fn insert(&mut self, t: TaskContainer) {
        self.known.insert(t.id.clone(), Some(t));
    }

    /// Forgets a removed container.
    pub fn forget(&mut self, id: &str) {
        self.known.remove(id);
    }
}

fn read_labels(path: &Path) -> Option<Labels> {
    serde_json::from_slice(&fs::read(path).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, id: &str, json: &str) {
        fs::create_dir_all(dir.join(id)).unwrap();
        fs::write(dir.join(id).join("config.json"), json).unwrap();
    }

    #[test]
    fn tasks_are_found_by_label_and_specs_read_once() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let (a, b, c) = ("a".repeat(64), "b".repeat(64), "c".repeat(64));
        write(
            dir,
            &a,
            r#"{"name":"web.1.t1","labels":{"berth.task":"t1"},"other":1}"#,
        );
        write(dir, &b, r#"{"name":"by-hand","labels":{}}"#);
        fs::create_dir_all(dir.join(&c)).unwrap(); // being created
        fs::create_dir_all(dir.join("not-an-id")).unwrap();
        let mut index = Index::default();
        let t = index.refresh(dir).unwrap();
        assert_eq!(
            t,
            vec![TaskContainer {
                id: a.clone(),
                name: "web.1.t1".into(),
                task_id: "t1".into()
            }]
        );
        // Known containers are not read again (a rewritten config changes nothing)...
        write(dir, &a, r#"{"name":"x","labels":{"berth.task":"other"}}"#);
        assert_eq!(index.refresh(dir).unwrap()[0].task_id, "t1");
        // ...new ones are, and removed ones are forgotten.
        write(
            dir,
            &c,
            r#"{"name":"web.2.t2","labels":{"berth.task":"t2"}}"#,
        );
        fs::remove_dir_all(dir.join(&a)).unwrap();
        let t = index.refresh(dir).unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].task_id, "t2");
        assert_eq!(index.known.len(), 2);
    }
}
