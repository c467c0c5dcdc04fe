//! An attempt's test reports (`reports: {junit: [...]}`), read from its
//! container after the commands, whatever their outcome: each path is a
//! report file or a directory of `.xml` reports, fetched through the
//! engine's archive API with a byte bound and summed by [`crate::junit`].

use std::io::Read as _;

use super::Executor;
use super::outputs::Small;
use crate::junit;
use crate::runner::{ActionSpec, LogSink};
use ferry_pipeline::mask::Masker;
use ferry_pipeline::reports::{MAX_REPORT_BYTES, TestSummary};

/// Most bytes of reports fetched for one path (a directory of reports).
const MAX_PATH_BYTES: u64 = 4 * MAX_REPORT_BYTES;

/// Most report files read under one directory.
const MAX_FILES_PER_PATH: usize = 1_000;

impl Executor {
    /// What the action's test reports say; `None` when it lists none.
    pub(super) async fn read_reports(
        &self,
        container: &str,
        a: &ActionSpec,
        log: &mut dyn LogSink,
    ) -> Option<TestSummary> {
        if a.reports.is_empty() {
            return None;
        }
        let mut summary = TestSummary::default();
        for path in &a.reports.junit {
            match self.fetch(container, path).await {
                Ok(tar) => read_tar(&mut summary, path, &tar),
                Err(problem) => {
                    junit::add_problem(&mut summary, format!("report `{path}`: {problem}"))
                }
            }
        }
        log.write(format!("[ferry] tests: {}\n", summary.line()).as_bytes());
        for problem in &summary.problems {
            log.write(format!("[ferry] {problem}\n").as_bytes());
        }
        Some(summary)
    }

    /// The engine's tar of `/workspace/<path>`, at most [`MAX_PATH_BYTES`].
    async fn fetch(&self, container: &str, path: &str) -> Result<Vec<u8>, String> {
        let full = format!("/workspace/{}", path.trim_end_matches('/'));
        self.download_small(container, &full, MAX_PATH_BYTES)
            .await
            .map_err(|e| match e {
                Small::Missing => "does not exist in /workspace".to_string(),
                Small::TooLarge => format!(
                    "is larger than {} MiB in all",
                    MAX_PATH_BYTES / (1024 * 1024)
                ),
            })
    }
}

/// `tests` with every secret in its texts replaced by `***`: a test may
/// print what it was given, and summaries reach the coordinators' log,
/// `ferry status`, the console and notifications.
pub(super) fn masked(mut tests: TestSummary, masker: &Masker) -> TestSummary {
    let mask = |text: &mut String| {
        let out = masker.mask(text.as_bytes());
        if out != text.as_bytes() {
            *text = String::from_utf8_lossy(&out).into_owned();
        }
    };
    for f in &mut tests.failures {
        mask(&mut f.suite);
        mask(&mut f.name);
        mask(&mut f.text);
    }
    tests.problems.iter_mut().for_each(mask);
    tests
}

/// Adds every report in `tar` (the engine's archive of `path`): the file
/// itself, or each `.xml` file under the directory.
fn read_tar(summary: &mut TestSummary, path: &str, tar: &[u8]) {
    let mut archive = tar::Archive::new(tar);
    let entries = match archive.entries() {
        Ok(entries) => entries,
        Err(e) => return junit::add_problem(summary, format!("report `{path}`: {e}")),
    };
    let mut files = 0usize;
    for (i, entry) in entries.enumerate() {
        let Ok(entry) = entry else {
            return junit::add_problem(summary, format!("report `{path}`: unreadable archive"));
        };
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry
            .path()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        // The first entry is the path itself when it is a file.
        if i > 0 && !name.ends_with(".xml") {
            continue;
        }
        files += 1;
        if files > MAX_FILES_PER_PATH {
            return junit::add_problem(
                summary,
                format!(
                    "report `{path}`: more than {MAX_FILES_PER_PATH} reports; the rest were not read"
                ),
            );
        }
        let mut xml = Vec::new();
        if entry
            .take(MAX_REPORT_BYTES + 1)
            .read_to_end(&mut xml)
            .is_err()
        {
            junit::add_problem(summary, format!("report `{name}`: unreadable"));
            continue;
        }
        if let Err(e) = junit::add_report(summary, &xml) {
            junit::add_problem(summary, format!("report `{name}` {e}"));
        }
    }
    if files == 0 {
        junit::add_problem(summary, format!("report `{path}`: holds no .xml report"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(files: &[(&str, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, body) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(body.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, body.as_bytes())
                .unwrap_or_else(|e| panic!("{e}"));
        }
        b.into_inner().unwrap_or_else(|e| panic!("{e}"))
    }

    const PASS: &str = r#"<testsuite name="a"><testcase name="x"/></testsuite>"#;
    const FAIL: &str =
        r#"<testsuite name="b"><testcase name="y"><failure>no</failure></testcase></testsuite>"#;

    #[test]
    fn a_directory_gives_each_xml_report_and_names_the_bad_ones() {
        let mut s = TestSummary::default();
        let tar = tar_of(&[
            ("reports/a.xml", PASS),
            ("reports/b.xml", FAIL),
            ("reports/notes.txt", "not a report"),
            ("reports/c.xml", "<testsuite"),
        ]);
        read_tar(&mut s, "reports", &tar);
        assert_eq!((s.total, s.passed, s.failed), (2, 1, 1));
        assert_eq!(s.problems.len(), 1, "{:?}", s.problems);
        assert!(s.problems[0].starts_with("report `reports/c.xml` is not JUnit XML"));
    }

    #[test]
    fn secrets_in_failures_are_masked() {
        let mut s = TestSummary::default();
        let leaky = r#"<testsuite name="s"><testcase name="hunter2"><failure>token=hunter2</failure></testcase></testsuite>"#;
        read_tar(&mut s, "r.xml", &tar_of(&[("r.xml", leaky)]));
        let s = masked(s, &Masker::new([b"hunter2".to_vec()]));
        assert_eq!(s.failures[0].name, "***");
        assert_eq!(s.failures[0].text, "token=***");
    }

    #[test]
    fn a_single_file_is_read_whatever_its_name() {
        let mut s = TestSummary::default();
        read_tar(&mut s, "out.junit", &tar_of(&[("out.junit", FAIL)]));
        assert_eq!((s.total, s.failed), (1, 1));
        assert!(s.problems.is_empty());
    }
}
