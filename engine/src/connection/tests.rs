//! Tests of `connection`.

use super::*;

const CA_DATA: &str = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==";

fn pasted(user_extra: &str, cluster_extra: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
current-context: dev
clusters:
- name: dev-cluster
  cluster:
    server: https://127.0.0.1:6443
{cluster_extra}
contexts:
- name: dev
  context:
    cluster: dev-cluster
    user: dev-user
    namespace: shop
- name: admin
  context:
    cluster: dev-cluster
    user: admin-user
users:
- name: dev-user
  user:
    token: s3cr3t-token
{user_extra}
- name: admin-user
  user:
    token: other-token
"
    )
}

fn forbidden(text: &str) -> (String, String, String) {
    match validate_pasted_kubeconfig(text) {
        Err(ConnectError::PastedForbiddenField {
            field,
            entry_kind,
            entry,
            ..
        }) => (field.to_owned(), entry_kind.to_owned(), entry),
        other => panic!("expected a forbidden field, got {other:?}"),
    }
}

#[test]
fn accepts_token_and_inline_data() {
    let text = pasted(
        "    client-certificate-data: Zm9v\n    client-key-data: YmFy",
        &format!("    certificate-authority-data: {CA_DATA}"),
    );
    let kubeconfig = validate_pasted_kubeconfig(&text).expect("valid");
    assert_eq!(kubeconfig.contexts.len(), 2);
}

#[test]
fn rejects_exec_naming_the_user() {
    let text = pasted(
        "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: /bin/sh\n      args: [\"-c\", \"id\"]",
        "",
    );
    assert_eq!(
        forbidden(&text),
        ("exec".to_owned(), "user".to_owned(), "dev-user".to_owned())
    );
    let message = validate_pasted_kubeconfig(&text).unwrap_err().to_string();
    assert!(message.contains("`exec`"), "{message}");
    assert!(message.contains("\"dev-user\""), "{message}");
    assert!(message.contains("run a command"), "{message}");
}

#[test]
fn rejects_auth_provider() {
    let text = pasted(
        "    auth-provider:\n      name: gcp\n      config:\n        cmd-path: /usr/bin/gcloud",
        "",
    );
    assert_eq!(
        forbidden(&text),
        (
            "auth-provider".to_owned(),
            "user".to_owned(),
            "dev-user".to_owned()
        )
    );
}

#[test]
fn rejects_file_paths() {
    for (field, user_extra) in [
        ("tokenFile", "    tokenFile: /var/run/secrets/token"),
        (
            "client-certificate",
            "    client-certificate: /etc/ssl/client.crt",
        ),
        ("client-key", "    client-key: /etc/ssl/client.key"),
    ] {
        assert_eq!(
            forbidden(&pasted(user_extra, "")),
            (field.to_owned(), "user".to_owned(), "dev-user".to_owned()),
        );
    }
    assert_eq!(
        forbidden(&pasted(
            "",
            "    certificate-authority: /etc/kubernetes/ca.crt"
        )),
        (
            "certificate-authority".to_owned(),
            "cluster".to_owned(),
            "dev-cluster".to_owned()
        )
    );
}

#[test]
fn rejects_forbidden_fields_in_unused_entries_too() {
    let text = format!(
        "{}- name: unused\n  user:\n    exec:\n      command: curl\n",
        pasted("", "")
    );
    assert_eq!(
        forbidden(&text),
        ("exec".to_owned(), "user".to_owned(), "unused".to_owned())
    );
}

#[test]
fn rejects_oversized_text() {
    let text = format!(
        "{}#{}\n",
        pasted("", ""),
        "x".repeat(MAX_PASTED_KUBECONFIG_BYTES)
    );
    assert!(matches!(
        validate_pasted_kubeconfig(&text),
        Err(ConnectError::PastedTooLarge {
            max: MAX_PASTED_KUBECONFIG_BYTES,
            ..
        })
    ));
}

#[test]
fn rejects_garbage_without_quoting_it() {
    for garbage in [
        "this is: [not closed",
        "just some words with token s3cr3t-token",
        "users: s3cr3t-token",
        "\u{0}\u{1}binary",
    ] {
        let err = validate_pasted_kubeconfig(garbage).expect_err(garbage);
        let message = err.to_string();
        assert!(
            matches!(err, ConnectError::PastedInvalid { .. }),
            "{garbage:?}: {message}"
        );
        assert!(!message.contains("s3cr3t"), "{message}");
    }
}

#[test]
fn rejects_empty_text() {
    let err = validate_pasted_kubeconfig("").unwrap_err();
    assert_eq!(
        err.to_string(),
        "the pasted text is not a usable kubeconfig: it defines no contexts"
    );
}

#[test]
fn debug_redacts_pasted_text() {
    let source = ConnectionSource::KubeconfigText {
        text: pasted("", ""),
        context: Some("dev".to_owned()),
    };
    let debug = format!("{source:?}");
    assert!(!debug.contains("s3cr3t"), "{debug}");
    assert!(debug.contains("redacted"), "{debug}");
}

#[test]
fn lists_contexts_sorted_with_current() {
    let source = ConnectionSource::KubeconfigText {
        text: pasted("", ""),
        context: None,
    };
    let contexts = list_contexts(&source).unwrap();
    assert_eq!(contexts.current.as_deref(), Some("dev"));
    let names: Vec<&str> = contexts.contexts.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["admin", "dev"]);
    assert_eq!(contexts.contexts[1].namespace.as_deref(), Some("shop"));
    assert_eq!(contexts.contexts[1].user.as_deref(), Some("dev-user"));
}

#[test]
fn lists_contexts_of_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config");
    std::fs::write(&path, pasted("", "")).unwrap();
    let contexts = list_contexts(&ConnectionSource::KubeconfigFile {
        path: Some(path),
        context: None,
    })
    .unwrap();
    assert_eq!(contexts.contexts.len(), 2);
}

#[test]
fn missing_file_names_the_path() {
    let err = list_contexts(&ConnectionSource::KubeconfigFile {
        path: Some(PathBuf::from("/nonexistent/kubeconfig")),
        context: None,
    })
    .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/kubeconfig"), "{err}");
}

#[tokio::test]
async fn connect_uses_requested_context_and_options() {
    let source = ConnectionSource::KubeconfigText {
        text: pasted("", ""),
        context: Some("admin".to_owned()),
    };
    let options = ConnectOptions {
        request_timeout: Duration::from_secs(7),
        connect_timeout: Duration::from_secs(3),
    };
    let cluster = connect(&source, &options).await.unwrap();
    assert_eq!(
        cluster.info,
        ClusterInfo {
            source: "pasted".to_owned(),
            context: Some("admin".to_owned()),
            server: "https://127.0.0.1:6443/".to_owned(),
            identity: "https://127.0.0.1:6443 ca:system".to_owned(),
        }
    );
    assert_eq!(cluster.config().read_timeout, Some(Duration::from_secs(7)));
    assert_eq!(
        cluster.config().connect_timeout,
        Some(Duration::from_secs(3))
    );
    assert!(!format!("{cluster:?}").contains("token"));
}

#[tokio::test]
async fn connect_defaults_to_current_context() {
    let source = ConnectionSource::KubeconfigText {
        text: pasted("", ""),
        context: None,
    };
    let cluster = connect(&source, &ConnectOptions::default()).await.unwrap();
    assert_eq!(cluster.info.context.as_deref(), Some("dev"));
    assert_eq!(cluster.config().default_namespace, "shop");
}

#[tokio::test]
async fn connect_rejects_unknown_context_listing_the_available_ones() {
    let source = ConnectionSource::KubeconfigText {
        text: pasted("", ""),
        context: Some("prod".to_owned()),
    };
    let err = connect(&source, &ConnectOptions::default())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the kubeconfig has no context named \"prod\" (available: admin, dev)"
    );
}
