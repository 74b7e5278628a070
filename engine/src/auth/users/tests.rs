use super::*;

/// Tiny argon2id cost (64 KiB, one pass) so tests can hash many times.
const FAST: HashParams = HashParams {
    memory_kib: 64,
    iterations: 1,
    parallelism: 1,
};

fn fast_hash(password: &str) -> String {
    hash_password_with_params(password, FAST).unwrap()
}

/// A hash of `password` with another argon2 variant.
fn hash_with(algorithm: Algorithm, password: &str) -> String {
    let params = argon2::Params::new(64, 1, 1, None).unwrap();
    Argon2::new(algorithm, Version::V0x13, params)
        .hash_password_with_salt(password.as_bytes(), b"0123456789abcdef")
        .unwrap()
        .to_string()
}

fn file(entries: &[(&str, &str, &str)]) -> String {
    let mut text = String::from("# test users\nusers:\n");
    for (name, role, hash) in entries {
        text.push_str(&format!(
            "  - name: {name}\n    role: {role}\n    password_hash: '{hash}'\n"
        ));
    }
    text
}

/// The error of loading `text`, checking that its message quotes none of `secrets`.
fn load_error(text: &str, secrets: &[&str]) -> UsersError {
    let err = Users::from_text(text).expect_err("the file should be refused");
    let message = err.to_string();
    let full = format!("{message} {:?}", std::error::Error::source(&err));
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        assert!(!full.contains(secret), "{full} quotes {secret}");
        // Not even the salt and output parts (the algorithm's name may be named).
        for part in secret.split('$').skip(2).filter(|p| p.len() >= 8) {
            assert!(!full.contains(part), "{full} quotes {part}");
        }
    }
    err
}

#[test]
fn names_follow_the_rules() {
    for good in [
        "a",
        "alice",
        "bob.smith",
        "ops_1",
        "alice@example.com",
        "x-y",
        "0",
    ] {
        assert!(is_valid_name(good), "{good}");
    }
    assert!(is_valid_name(&"a".repeat(64)));
    for bad in [
        "",
        "Alice",
        "bob smith",
        "a/b",
        "a:b",
        "ä",
        "a\n",
        "$argon2id",
        &"a".repeat(65),
    ] {
        assert!(!is_valid_name(bad), "{bad:?}");
    }
}

#[test]
fn hashes_with_default_parameters_and_verifies() {
    let phc = hash_password("correct horse battery staple").unwrap();
    assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
    check_hash(&phc).unwrap();
    let users = Users::empty().with_admin("alice", &phc).unwrap();
    assert_eq!(
        users.verify("alice", "correct horse battery staple"),
        Some(User {
            name: "alice".to_owned(),
            role: Role::Admin
        })
    );
    assert_eq!(users.verify("alice", "correct horse battery stapl"), None);
}

#[test]
fn salts_are_random() {
    let a = fast_hash("same");
    let b = fast_hash("same");
    assert_ne!(a, b);
    assert!(a.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{a}");
}

#[test]
fn refuses_empty_and_overlong_passwords() {
    assert!(matches!(
        hash_password_with_params("", FAST),
        Err(PasswordError::Empty)
    ));
    assert!(matches!(
        hash_password_with_params(&"x".repeat(MAX_PASSWORD_LEN + 1), FAST),
        Err(PasswordError::TooLong)
    ));
    let longest = "x".repeat(MAX_PASSWORD_LEN);
    let phc = hash_password_with_params(&longest, FAST).unwrap();
    let users = Users::empty().with_admin("a", &phc).unwrap();
    assert!(users.verify("a", &longest).is_some());
    // A longer password is refused before hashing, even if its prefix matches.
    assert!(users.verify("a", &format!("{longest}x")).is_none());
    assert!(users.verify("a", "").is_none());
}

#[test]
fn refuses_invalid_parameters() {
    let bad = HashParams {
        memory_kib: 1,
        ..FAST
    };
    assert!(matches!(
        hash_password_with_params("pw", bad),
        Err(PasswordError::Params(_))
    ));
}

#[test]
fn loads_a_users_file_and_verifies_each_user() {
    let (a, o, v) = (fast_hash("pa"), fast_hash("po"), fast_hash("pv"));
    let users = Users::from_text(&file(&[
        ("alice", "admin", &a),
        ("olga", "operator", &o),
        ("vic@example.com", "viewer", &v),
    ]))
    .unwrap()
    .non_empty()
    .unwrap();
    assert_eq!(users.len(), 3);
    assert_eq!(
        users.roles(),
        BTreeMap::from([
            ("alice".to_owned(), Role::Admin),
            ("olga".to_owned(), Role::Operator),
            ("vic@example.com".to_owned(), Role::Viewer),
        ])
    );
    assert_eq!(users.get("olga").map(|u| u.role), Some(Role::Operator));
    assert_eq!(users.get("nobody"), None);
    assert_eq!(
        users
            .list()
            .iter()
            .map(|u| u.name.as_str())
            .collect::<Vec<_>>(),
        ["alice", "olga", "vic@example.com"]
    );
    assert_eq!(
        users.verify("alice", "pa").map(|u| u.role),
        Some(Role::Admin)
    );
    assert_eq!(
        users.verify("olga", "po").map(|u| u.role),
        Some(Role::Operator)
    );
    assert_eq!(
        users.verify("vic@example.com", "pv").map(|u| u.name),
        Some("vic@example.com".to_owned())
    );
    // Someone else's password, a wrong one, an unknown or differently cased name.
    assert_eq!(users.verify("alice", "po"), None);
    assert_eq!(users.verify("alice", "PA"), None);
    assert_eq!(users.verify("mallory", "pa"), None);
    assert_eq!(users.verify("Alice", "pa"), None);
    assert_eq!(users.verify("", "pa"), None);
}

#[test]
fn reads_the_documented_format_with_unquoted_hashes() {
    let hash = fast_hash("pw");
    let text = format!(
        "---\nusers:\n  - name: alice\n    role: admin          # viewer | operator | admin\n    \
         password_hash: {hash}\n"
    );
    let users = Users::from_text(&text).unwrap();
    assert_eq!(
        users.verify("alice", "pw").map(|u| u.role),
        Some(Role::Admin)
    );
}

#[test]
fn debug_shows_names_and_roles_but_no_hash() {
    let phc = fast_hash("pw");
    let users = Users::empty().with_admin("alice", &phc).unwrap();
    let debug = format!("{users:?}");
    assert!(
        debug.contains("alice") && debug.contains("Admin"),
        "{debug}"
    );
    assert!(!debug.contains("argon2"), "{debug}");
}

#[test]
fn unknown_names_are_checked_against_a_dummy_with_the_users_cost() {
    let users = Users::empty();
    let dummy = users.inner.dummy.clone().expect("the default dummy parses");
    assert_eq!(dummy.algorithm, ARGON2ID_IDENT);
    assert_eq!(dummy.params.to_string(), "m=19456,t=2,p=1");

    let phc = fast_hash("pw");
    let users = Users::empty()
        .with_admin("alice", &phc)
        .unwrap()
        .with_admin(
            "bob",
            &hash_password_with_params(
                "pw",
                HashParams {
                    memory_kib: 128,
                    ..FAST
                },
            )
            .unwrap(),
        )
        .unwrap();
    let dummy = users.inner.dummy.clone().unwrap();
    // The first user's cost, another salt, an output no password yields.
    assert_eq!(dummy.params.to_string(), "m=64,t=1,p=1");
    assert_eq!(
        dummy
            .hash
            .as_ref()
            .map(argon2::password_hash::phc::Output::len),
        Some(32)
    );
    assert_ne!(dummy.salt, PasswordHash::new(&phc).unwrap().salt);
    assert!(!matches(&dummy, "pw", &mut VerifyMemory::default()));
    assert_eq!(users.verify("carol", "pw"), None);
}

#[tokio::test]
async fn verify_async_runs_on_the_blocking_pool() {
    let users = Users::empty()
        .with_admin("alice", &fast_hash("pw"))
        .unwrap();
    assert_eq!(
        users.verify_async("alice", "pw").await.map(|u| u.role),
        Some(Role::Admin)
    );
    assert_eq!(users.verify_async("alice", "nope").await, None);
    assert_eq!(users.verify_async("bob", "pw").await, None);
}

#[test]
fn empty_files_give_no_users_and_no_users_is_refused() {
    for text in [
        "",
        "\n",
        "# nobody yet\n",
        "---\n",
        "users:\n",
        "users: []\n",
    ] {
        let users = Users::from_text(text).unwrap();
        assert!(users.is_empty(), "{text:?}");
        let err = users.non_empty().unwrap_err();
        assert!(matches!(err, UsersError::NoUsers));
        let message = err.to_string();
        assert!(message.starts_with("no users configured"), "{message}");
        assert!(message.contains("no default user"), "{message}");
    }
}

#[test]
fn refuses_yaml_errors_with_their_line() {
    let hash = fast_hash("pw");
    // Broken YAML (an unterminated quote on line 3).
    let text = format!("users:\n  - name: alice\n    role: 'admin\n    password_hash: '{hash}'\n");
    let err = load_error(&text, &[&hash]);
    assert!(
        matches!(err, UsersError::Syntax { line: Some(_), .. }),
        "{err}"
    );

    // A misspelt key on line 4.
    let text = format!("users:\n  - name: alice\n    role: admin\n    pasword_hash: '{hash}'\n");
    let err = load_error(&text, &[&hash]);
    match &err {
        UsersError::Syntax {
            line: Some(4),
            message,
            ..
        } => assert!(message.contains("pasword_hash"), "{message}"),
        other => panic!("expected a syntax error on line 4, got {other:?}"),
    }
    assert!(err.to_string().contains("line 4"), "{err}");

    // A missing field, an unknown top-level key.
    let err = load_error("users:\n  - name: alice\n    role: admin\n", &[]);
    assert!(err.to_string().contains("password_hash"), "{err}");
    let err = load_error("admins: []\n", &[]);
    assert!(err.to_string().contains("admins"), "{err}");

    // A hash where a list belongs: the message would quote it, so it is withheld.
    let text = format!("users: '{hash}'\n");
    let err = load_error(&text, &[&hash]);
    assert!(err.to_string().contains("withheld"), "{err}");
    let text = format!("users:\n  - name: alice\n    role: admin\n    password_hash: ['{hash}']\n");
    load_error(&text, &[&hash]);
}

#[test]
fn refuses_invalid_names_roles_and_duplicates() {
    let hash = fast_hash("pw");
    for name in ["Alice", "'bob smith'", "'a/b'", &"a".repeat(65), "''"] {
        let err = load_error(
            &file(&[("ok", "viewer", &hash), (name, "admin", &hash)]),
            &[&hash],
        );
        assert!(
            matches!(err, UsersError::InvalidName { .. }),
            "{name}: {err}"
        );
        assert!(err.to_string().starts_with("user #2"), "{err}");
    }
    // A hash pasted into the name is not quoted back.
    let err = load_error(&file(&[(&format!("'{hash}'"), "admin", &hash)]), &[&hash]);
    assert!(matches!(err, UsersError::InvalidName { .. }), "{err}");

    for role in ["Admin", "root", "''", &format!("'{hash}'")] {
        let err = load_error(&file(&[("alice", role, &hash)]), &[&hash]);
        assert!(
            matches!(err, UsersError::InvalidRole { .. }),
            "{role}: {err}"
        );
        assert!(err.to_string().contains("user #1 \"alice\""), "{err}");
    }

    let other = fast_hash("other");
    let err = load_error(
        &file(&[("alice", "admin", &hash), ("alice", "viewer", &other)]),
        &[&hash, &other],
    );
    assert!(matches!(err, UsersError::Duplicate { .. }), "{err}");
    assert!(err.to_string().contains("user #2 \"alice\""), "{err}");
}

/// What a refused hash's problem should look like.
type Expected = fn(&HashProblem) -> bool;

#[test]
#[allow(
    clippy::similar_names,
    reason = "argon2i and argon2d are the algorithms' names"
)]
fn refuses_hashes_other_than_argon2id_v19() {
    let good = fast_hash("pw");
    let argon2i = hash_with(Algorithm::Argon2i, "pw");
    let argon2d = hash_with(Algorithm::Argon2d, "pw");
    assert!(argon2i.starts_with("$argon2i$"), "{argon2i}");
    let v16 = good.replace("$v=19$", "$v=16$");
    let no_version = good.replace("$v=19$", "$");
    let costly = good.replace("m=64,", "m=2097152,");
    let slow = good.replace("t=1,", "t=1000,");
    let no_output = good.rsplit_once('$').unwrap().0.to_owned();
    let short_salt = {
        let parts: Vec<&str> = good.split('$').collect();
        // 6 base64 characters: 4 bytes of salt.
        format!(
            "${}${}${}$c2FsdHM${}",
            parts[1], parts[2], parts[3], parts[5]
        )
    };
    let bad_params = good.replace("m=64,t=1,p=1", "m=64,t=0,p=1");
    let cases: [(&str, Expected); 13] = [
        (
            &argon2i,
            |p| matches!(p, HashProblem::Algorithm(a) if a == "argon2i"),
        ),
        (
            &argon2d,
            |p| matches!(p, HashProblem::Algorithm(a) if a == "argon2d"),
        ),
        (
            "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW",
            |p| matches!(p, HashProblem::Algorithm(_) | HashProblem::NotPhc(_)),
        ),
        (
            "$pbkdf2-sha256$i=600000$c2FsdHNhbHQ$Zm9vYmFyYmF6cXV4",
            |p| matches!(p, HashProblem::Algorithm(a) if a == "pbkdf2-sha256"),
        ),
        ("plaintext-password", |p| {
            matches!(p, HashProblem::NotPhc(_))
        }),
        ("", |p| matches!(p, HashProblem::NotPhc(_))),
        (&v16, |p| matches!(p, HashProblem::Version)),
        (&no_version, |p| matches!(p, HashProblem::Version)),
        (&costly, |p| {
            matches!(
                p,
                HashProblem::TooCostly {
                    memory_kib: 2_097_152,
                    ..
                }
            )
        }),
        (&slow, |p| {
            matches!(
                p,
                HashProblem::TooCostly {
                    iterations: 1000,
                    ..
                }
            )
        }),
        (&no_output, |p| matches!(p, HashProblem::Incomplete)),
        (&short_salt, |p| {
            matches!(p, HashProblem::SaltTooShort | HashProblem::NotPhc(_))
        }),
        (&bad_params, |p| matches!(p, HashProblem::Params(_))),
    ];
    for (phc, expected) in cases {
        let problem = check_hash(phc).expect_err(phc);
        assert!(expected(&problem), "{phc}: {problem:?}");
        let err = load_error(&file(&[("alice", "admin", phc)]), &[phc]);
        match &err {
            UsersError::InvalidHash { who, problem: p } => {
                assert_eq!(who, "user #1 \"alice\"");
                assert_eq!(p, &problem);
            }
            other => panic!("{phc}: expected InvalidHash, got {other:?}"),
        }
        assert!(
            Users::empty().with_admin("root", phc).is_err(),
            "with_admin accepted {phc}"
        );
    }
    check_hash(&good).unwrap();
}

#[test]
fn with_admin_adds_a_first_admin_and_refuses_duplicates() {
    let hash = fast_hash("pw");
    let users = Users::from_text(&file(&[("olga", "operator", &hash)]))
        .unwrap()
        .with_admin("root", &fast_hash("secret"))
        .unwrap();
    assert_eq!(users.get("root").map(|u| u.role), Some(Role::Admin));
    assert_eq!(
        users.verify("root", "secret").map(|u| u.role),
        Some(Role::Admin)
    );

    let err = users.clone().with_admin("olga", &hash).unwrap_err();
    assert!(matches!(err, UsersError::Duplicate { .. }), "{err}");
    assert!(
        err.to_string().contains("the configured admin \"olga\""),
        "{err}"
    );
    let err = users.clone().with_admin("Root2", &hash).unwrap_err();
    assert!(matches!(err, UsersError::InvalidName { .. }), "{err}");
    let err = users.with_admin("root2", "hunter2").unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
    assert!(matches!(err, UsersError::InvalidHash { .. }), "{err}");
}

#[test]
fn load_reads_a_file_and_names_it_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users.yaml");
    std::fs::write(&path, file(&[("alice", "admin", &fast_hash("pw"))])).unwrap();
    assert_eq!(Users::load(&path).unwrap().len(), 1);

    std::fs::write(&path, "users:\n  - name: Alice\n").unwrap();
    let err = Users::load(&path).unwrap_err();
    assert!(matches!(err, UsersError::File { .. }), "{err}");
    assert!(err.to_string().contains("users.yaml"), "{err}");

    let err = Users::load(&dir.path().join("missing.yaml")).unwrap_err();
    assert!(matches!(err, UsersError::Read { .. }), "{err}");
}

#[test]
fn local_users_need_a_hash_but_oidc_roles_do_not() {
    let text = "users:\n  - name: alice\n    role: admin\n  - {name: bob, role: viewer}\n";
    match Users::from_text(text) {
        Err(UsersError::MissingHash { who }) => assert_eq!(who, "user #1 \"alice\""),
        other => panic!("expected a missing hash, got {other:?}"),
    }
    let roles = Users::roles_from_text(text).unwrap();
    assert_eq!(roles.len(), 2);
    assert_eq!(roles["alice"], Role::Admin);
    assert_eq!(roles["bob"], Role::Viewer);
    // A hash, when present, is ignored; names, roles and duplicates are still checked.
    let with_hash = "users:\n  - {name: carol, role: operator, password_hash: 'x'}\n";
    assert_eq!(
        Users::roles_from_text(with_hash).unwrap()["carol"],
        Role::Operator
    );
    for bad in [
        "users:\n  - {name: Carol, role: admin}\n",
        "users:\n  - {name: carol, role: root}\n",
        "users:\n  - {name: carol, role: admin}\n  - {name: carol, role: viewer}\n",
        "users:\n  - {name: carol, role: admin, password: x}\n",
    ] {
        assert!(Users::roles_from_text(bad).is_err(), "{bad}");
    }
    assert!(Users::roles_from_text("# nobody\n").unwrap().is_empty());
}
