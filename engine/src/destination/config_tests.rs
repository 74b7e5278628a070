//! Unit tests of the destinations file: every accepted form and every refusal.

use super::*;

fn parse(text: &str) -> Result<DestinationsConfig, String> {
    DestinationsConfig::parse(text, Path::new("/etc/nkvm"), Path::new("/data"))
}

fn refused(text: &str) -> String {
    parse(text).expect_err("should be refused")
}

const FULL: &str = r"
default_destination: offsite
destinations:
  - name: offsite
    type: s3
    endpoint: https://s3.example.com:9000
    bucket: backups
    prefix: /nkvm/prod/
    region: eu-west-1
    path_style: true
    access_key_id_env: S3_KEY
    secret_access_key_file: s3/secret
    ca_file: ca.pem
    part_size: 16MiB
  - name: nas
    type: sftp
    host: nas.example
    port: 2222
    user: backup
    path: /srv/backups
    private_key_file: /keys/id_ed25519
    known_hosts_file: known_hosts
  - name: legacy-ftp
    type: ftps
    host: ftp.example
    user: nkvm
    password_file: /secrets/ftp
    path: archives
  - name: disk2
    type: local
    path: /mnt/disk2
";

#[test]
fn a_full_file_parses_with_defaults_and_relative_paths() {
    let config = parse(FULL).unwrap();
    assert_eq!(config.default_destination, "offsite");
    let names: Vec<_> = config
        .destinations
        .iter()
        .map(|d| d.name.as_str())
        .collect();
    assert_eq!(names, ["local", "offsite", "nas", "legacy-ftp", "disk2"]);
    assert_eq!(
        config.destinations[0].kind,
        KindConfig::Local(LocalConfig {
            path: "/data/artifacts".into()
        })
    );
    let KindConfig::S3(s3) = &config.destinations[1].kind else {
        panic!("not s3")
    };
    assert_eq!(s3.endpoint.as_str(), "https://s3.example.com:9000/");
    assert_eq!(s3.prefix, "nkvm/prod");
    assert_eq!(s3.region, "eu-west-1");
    assert!(s3.path_style);
    assert_eq!(s3.access_key_id, SecretRef::Env("S3_KEY".into()));
    assert_eq!(
        s3.secret_access_key,
        SecretRef::File("/etc/nkvm/s3/secret".into())
    );
    assert_eq!(s3.ca_file.as_deref(), Some(Path::new("/etc/nkvm/ca.pem")));
    assert_eq!(s3.part_size, 16 << 20);
    let KindConfig::Sftp(sftp) = &config.destinations[2].kind else {
        panic!("not sftp")
    };
    assert_eq!(sftp.port, 2222);
    assert_eq!(sftp.known_hosts_file, Path::new("/etc/nkvm/known_hosts"));
    let KindConfig::Ftps(ftps) = &config.destinations[3].kind else {
        panic!("not ftps")
    };
    assert_eq!(ftps.port, 21);
    assert!(!ftps.insecure_plain_ftp);
    assert_eq!(ftps.ca_file, None);
}

#[test]
fn an_empty_file_means_local_only() {
    let config = parse("destinations: []\n").unwrap();
    assert_eq!(config, DestinationsConfig::local_only(Path::new("/data")));
    let config = parse("{}\n").unwrap();
    assert_eq!(config.default_destination, "local");
}

#[test]
fn local_can_be_redefined() {
    let config = parse("destinations:\n  - {name: local, type: local, path: arch}\n").unwrap();
    assert_eq!(config.destinations.len(), 1);
    assert_eq!(
        config.destinations[0].kind,
        KindConfig::Local(LocalConfig {
            path: "/etc/nkvm/arch".into()
        })
    );
}

#[test]
fn unknown_fields_are_refused() {
    let e = refused("destinations: []\nextra: 1\n");
    assert!(e.contains("unknown field `extra`"), "{e}");
    let e = refused(
        "destinations:\n  - {name: a, type: sftp, host: h, user: u, private_key_file: k, known_hosts_file: kh, hostkey_check: false}\n",
    );
    assert!(e.contains("unknown field `hostkey_check`"), "{e}");
    assert!(e.contains("destination \"a\""), "{e}");
}

#[test]
fn inline_secrets_are_refused_with_what_to_use() {
    let e = refused(
        "destinations:\n  - {name: a, type: s3, endpoint: 'https://x', bucket: b, access_key_id_env: K, secret_access_key: hunter2}\n",
    );
    assert!(
        e.contains("`secret_access_key` would hold a secret inline"),
        "{e}"
    );
    assert!(e.contains("secret_access_key_file"), "{e}");
    assert!(
        !e.contains("hunter2"),
        "the refusal must not echo the secret: {e}"
    );
    let e =
        refused("destinations:\n  - {name: a, type: ftps, host: h, user: u, password: hunter2}\n");
    assert!(e.contains("password_env") && !e.contains("hunter2"), "{e}");
    let e = refused(
        "destinations:\n  - {name: a, type: sftp, host: h, user: u, password: x, known_hosts_file: k, private_key_file: k}\n",
    );
    assert!(e.contains("private_key_file"), "{e}");
}

#[test]
fn secret_references_need_exactly_one_source() {
    let e = refused(
        "destinations:\n  - {name: a, type: ftps, host: h, user: u, password_env: P, password_file: f}\n",
    );
    assert!(e.contains("not both"), "{e}");
    let e = refused("destinations:\n  - {name: a, type: ftps, host: h, user: u}\n");
    assert!(e.contains("password is missing"), "{e}");
    let e = refused(
        "destinations:\n  - {name: a, type: s3, endpoint: 'https://x', bucket: b, secret_access_key_env: S}\n",
    );
    assert!(e.contains("access_key_id is missing"), "{e}");
}

#[test]
fn names_are_validated_and_unique() {
    for bad in ["Offsite", "-a", "a-", "a_b", "a.b", "", &"a".repeat(64)] {
        let text = format!("destinations:\n  - {{name: '{bad}', type: local}}\n");
        let e = refused(&text);
        assert!(
            e.contains("is invalid") || e.contains("no `name`"),
            "{bad}: {e}"
        );
    }
    let e = refused("destinations:\n  - {name: a, type: local}\n  - {name: a, type: local}\n");
    assert!(e.contains("defined twice"), "{e}");
    let e = refused("destinations:\n  - {type: local}\n");
    assert!(e.contains("has no `name`"), "{e}");
}

#[test]
fn types_defaults_and_values_are_checked() {
    let e = refused("destinations:\n  - {name: a, type: scp}\n");
    assert!(e.contains("unknown type") && e.contains("sftp"), "{e}");
    let e = refused("destinations:\n  - {name: a}\n");
    assert!(e.contains("has no `type`"), "{e}");
    let e = refused("default_destination: nope\ndestinations: []\n");
    assert!(e.contains("default_destination \"nope\""), "{e}");
    let e = refused("destinations: [5]\n");
    assert!(e.contains("must be a mapping"), "{e}");
    let s3 = |extra: &str| {
        format!(
            "destinations:\n  - {{name: a, type: s3, bucket: b, access_key_id_env: K, secret_access_key_env: S, {extra}}}\n"
        )
    };
    let e = refused(&s3("endpoint: 'ftp://x'"));
    assert!(e.contains("must be https://"), "{e}");
    let e = refused(&s3("endpoint: 'https://user:pw@x'"));
    assert!(e.contains("without credentials"), "{e}");
    let e = refused(&s3("endpoint: 'https://x', part_size: 1MiB"));
    assert!(e.contains("5MiB to 5GiB"), "{e}");
    let e = refused(&s3("endpoint: 'https://x', part_size: 64MB"));
    assert!(e.contains("not one of"), "{e}");
    let e = refused(&s3("endpoint: 'https://x', prefix: 'a/../b'"));
    assert!(e.contains("prefix"), "{e}");
    let ok = parse(&s3("endpoint: 'http://127.0.0.1:7070', part_size: 5242880")).unwrap();
    let KindConfig::S3(cfg) = &ok.destinations[1].kind else {
        panic!()
    };
    assert_eq!(cfg.part_size, MIN_PART_SIZE);
    assert_eq!(cfg.region, "us-east-1");
    let e = refused(
        "destinations:\n  - {name: a, type: sftp, host: 'u@h', user: u, private_key_file: k, known_hosts_file: kh}\n",
    );
    assert!(e.contains("host"), "{e}");
    let e = refused(
        "destinations:\n  - {name: a, type: sftp, host: h, user: u, path: '../x', private_key_file: k, known_hosts_file: kh}\n",
    );
    assert!(e.contains("without `..`"), "{e}");
}

#[test]
fn keys_and_prefixes() {
    assert_eq!(normalize_prefix("").unwrap(), "");
    assert_eq!(normalize_prefix("//a/b//").unwrap(), "a/b");
    assert!(normalize_prefix("a//b").is_err());
    validate_key("ns/pvc/20261128T231858.123Z.tar.gz").unwrap();
    for bad in ["", "/a", "a/", "a//b", "../a", "a/./b", "a\\b", "a\nb"] {
        assert!(validate_key(bad).is_err(), "{bad:?}");
    }
}
