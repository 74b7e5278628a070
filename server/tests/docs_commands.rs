//! Runs the command blocks the documentation marks as runnable, so the docs cannot drift from the
//! binary. A fenced `sh` block right after a `<!-- test: local -->` line needs no cluster; one after
//! `<!-- test: cluster -->` runs on the test cluster (`NKVM_TEST_KUBECONFIG`) once the demo
//! workloads are seeded (`scripts/demo-seed.sh`, as `scripts/run.sh --demo` does). The marked blocks
//! of one Markdown file run in order in one `bash` (`set -euo pipefail`, so a variable set by one
//! block is there for the next), in a fresh directory, with the built `nkvm` — and for the cluster
//! the test cluster's `kubectl` — first on the `PATH` and none of the caller's `NKVM_*` settings. A
//! non-zero exit fails the test, naming the file and the block's line.

mod support;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::core::v1::Namespace;
use kube::Api;

/// The namespaces `scripts/demo-seed.sh` creates (its default prefix), which the cluster blocks use.
const DEMO_NAMESPACES: [&str; 2] = ["demo-shop", "demo-analytics"];

/// One runnable block: where it is and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Block {
    file: String,
    line: usize,
    kind: String,
    script: String,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the server crate is in the repository")
        .to_path_buf()
}

/// `README.md` and every Markdown file under `docs/`, sorted.
fn markdown_files(root: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read docs directory") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "md") {
                out.push(path);
            }
        }
    }
    let mut files = vec![root.join("README.md")];
    walk(&root.join("docs"), &mut files);
    files.sort();
    files
}

/// The marked blocks of one Markdown text. A marker must be followed (blank lines aside) by a
/// fenced `sh` block, and name a known kind: anything else is an error, so a marker never
/// silently stops testing its block.
fn parse_blocks(file: &str, text: &str) -> Result<Vec<Block>, String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut blocks = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(kind) = lines[i]
            .trim()
            .strip_prefix("<!-- test:")
            .and_then(|rest| rest.strip_suffix("-->"))
            .map(str::trim)
        else {
            i += 1;
            continue;
        };
        if kind != "local" && kind != "cluster" {
            return Err(format!(
                "{file}:{}: unknown test kind {kind:?} (local or cluster)",
                i + 1
            ));
        }
        let mut j = i + 1;
        while j < lines.len() && lines[j].trim().is_empty() {
            j += 1;
        }
        let fence = lines.get(j).copied().unwrap_or_default();
        if fence.trim() != "```sh" {
            return Err(format!(
                "{file}:{}: a test marker must be followed by a ```sh block",
                i + 1
            ));
        }
        let indent = fence.len() - fence.trim_start().len();
        let mut script = String::new();
        let mut k = j + 1;
        loop {
            let Some(line) = lines.get(k) else {
                return Err(format!("{file}:{}: the ```sh block is not closed", j + 1));
            };
            if line.trim() == "```" {
                break;
            }
            // Only the fence's own indentation is removed (a list item's), never more.
            let cut = (line.len() - line.trim_start().len()).min(indent);
            let _ = writeln!(script, "{}", &line[cut..]);
            k += 1;
        }
        blocks.push(Block {
            file: file.to_owned(),
            line: j + 2,
            kind: kind.to_owned(),
            script,
        });
        i = k + 1;
    }
    Ok(blocks)
}

/// Every marked block of `kind` in the repository's docs, grouped by file (in file order).
fn blocks_of(kind: &str) -> Vec<Vec<Block>> {
    let root = repo_root();
    let mut groups = Vec::new();
    for path in markdown_files(&root) {
        let name = path
            .strip_prefix(&root)
            .expect("inside the repository")
            .display()
            .to_string();
        let text = std::fs::read_to_string(&path).expect("read Markdown file");
        let blocks: Vec<Block> = parse_blocks(&name, &text)
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .filter(|b| b.kind == kind)
            .collect();
        if !blocks.is_empty() {
            groups.push(blocks);
        }
    }
    groups
}

/// The test cluster's `kubectl`: `NKVM_TEST_KUBECTL`, else the one the cluster build cached, else
/// the first `kubectl` on the `PATH` (as the engine's cluster tests find it).
fn kubectl_path() -> PathBuf {
    if let Some(path) = std::env::var_os("NKVM_TEST_KUBECTL") {
        return PathBuf::from(path);
    }
    let text = std::fs::read_to_string(repo_root().join("end2end/cluster/versions.env"))
        .unwrap_or_default();
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(str::to_owned)
    };
    let cache = std::env::var_os("NKVM_CACHE_DIR").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/nkvm"),
        PathBuf::from,
    );
    if let (Some(k8s), Some(etcd)) = (value("K8S_VERSION"), value("ETCD_VERSION")) {
        let cached = cache.join(format!("k8s-{k8s}-etcd-{etcd}/bin/kubectl"));
        if cached.is_file() {
            return cached;
        }
    }
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join("kubectl"))
        .find(|path| path.is_file())
        .expect("no kubectl: set NKVM_TEST_KUBECTL or build the test cluster (end2end/cluster/up)")
}

/// Runs one file's blocks in a fresh directory and fails with the output when the shell fails.
/// `tools` are put on the `PATH` under their names; `env` is added to a clean nkvm environment.
fn run_file(blocks: &[Block], tools: &[(&str, PathBuf)], env: &[(&str, String)]) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).expect("bin directory");
    for (name, target) in tools {
        std::os::unix::fs::symlink(target, bin.join(name)).expect("tool link");
    }
    let work = dir.path().join("work");
    std::fs::create_dir(&work).expect("work directory");

    let mut script = String::from("set -euo pipefail\n");
    for block in blocks {
        let _ = writeln!(script, "echo '>>> {}:{}' >&2", block.file, block.line);
        script.push_str(&block.script);
    }
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut command = Command::new("bash");
    command.arg("-c").arg(&script).current_dir(&work);
    for (key, _) in std::env::vars() {
        if key.starts_with("NKVM_") || key == "KUBECONFIG" || key == "RUST_LOG" {
            command.env_remove(key);
        }
    }
    command.env("PATH", path);
    for (key, value) in env {
        command.env(key, value);
    }
    let out = command.output().expect("run bash");
    let file = &blocks[0].file;
    assert!(
        out.status.success(),
        "the command blocks of {file} failed ({}); the failing one is the last `>>>` on stderr\n\
         --- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "{file}: {} block(s) passed\n{}",
        blocks.len(),
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn markers_select_only_the_block_they_precede() {
    let text = "intro\n\n<!-- test: local -->\n```sh\nnkvm --help\n```\n\n```sh\nnot run\n```\n\n\
                1. step\n\n   <!-- test: cluster -->\n   ```sh\n   nkvm inventory\n     indented\n   ```\n";
    let blocks = parse_blocks("x.md", text).expect("valid markers");
    assert_eq!(
        blocks,
        vec![
            Block {
                file: "x.md".into(),
                line: 5,
                kind: "local".into(),
                script: "nkvm --help\n".into()
            },
            Block {
                file: "x.md".into(),
                line: 16,
                kind: "cluster".into(),
                script: "nkvm inventory\n  indented\n".into()
            },
        ]
    );
    let orphan = parse_blocks("y.md", "<!-- test: local -->\ntext\n```sh\nx\n```\n");
    assert!(orphan.unwrap_err().contains("y.md:1"));
    let unknown = parse_blocks("z.md", "<!-- test: cluser -->\n```sh\nx\n```\n");
    assert!(unknown.unwrap_err().contains("unknown test kind"));
    let open = parse_blocks("w.md", "<!-- test: local -->\n```sh\nx\n");
    assert!(open.unwrap_err().contains("not closed"));
}

/// The blocks that need no cluster: `hash-password`, and output formats on an empty data directory.
#[test]
fn local_command_blocks_of_the_docs_run() {
    let groups = blocks_of("local");
    let count: usize = groups.iter().map(Vec::len).sum();
    assert!(
        count >= 2,
        "expected the docs to mark at least 2 local command blocks, found {count}"
    );
    let nkvm = PathBuf::from(env!("CARGO_BIN_EXE_nkvm"));
    for blocks in &groups {
        run_file(blocks, &[("nkvm", nkvm.clone())], &[]);
    }
}

/// The tutorial's and the how-tos' cluster blocks: inventory, backups of the demo's PVCs, history,
/// an archive checked with `sha256sum` and `tar`, verify, restore into a new PVC, drill.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the test cluster"]
async fn cluster_command_blocks_of_the_docs_run() {
    let groups = blocks_of("cluster");
    let count: usize = groups.iter().map(Vec::len).sum();
    assert!(
        count >= 5,
        "expected the docs to mark at least 5 cluster command blocks, found {count}"
    );
    let kubeconfig = support::kubeconfig_path();

    // The demo's namespaces are removed afterwards only when this test created them.
    let namespaces: Api<Namespace> = Api::all(support::client().await);
    let mut guards = Vec::new();
    for ns in DEMO_NAMESPACES {
        if namespaces
            .get_opt(ns)
            .await
            .expect("read namespace")
            .is_none()
        {
            guards.push(support::NamespaceGuard(ns.to_owned()));
        }
    }
    let seed = Command::new(repo_root().join("scripts/demo-seed.sh"))
        .current_dir(repo_root())
        .env("NKVM_TEST_KUBECONFIG", &kubeconfig)
        .env_remove("NKVM_DEMO_PREFIX")
        .output()
        .expect("run scripts/demo-seed.sh");
    assert!(
        seed.status.success(),
        "scripts/demo-seed.sh failed: {}",
        String::from_utf8_lossy(&seed.stderr)
    );

    let tools = [
        ("nkvm", PathBuf::from(env!("CARGO_BIN_EXE_nkvm"))),
        ("kubectl", kubectl_path()),
    ];
    let env = [("KUBECONFIG", kubeconfig.clone())];
    for blocks in &groups {
        run_file(blocks, &tools, &env);
    }
    drop(guards);
}
