//! Tests of `nkvm serve`'s options.

use clap::Parser as _;

use super::ServeArgs;
use crate::cli::{Cli, Command};

fn serve(args: &[&str]) -> ServeArgs {
    let cli = Cli::try_parse_from(["nkvm", "serve"].iter().chain(args)).unwrap();
    match cli.command {
        Command::Serve(args) => args,
        other => panic!("not serve: {other:?}"),
    }
}

#[test]
fn an_https_oidc_redirect_url_makes_cookies_secure() {
    let https = "https://nkvm.example/auth/oidc/callback";
    let http = "http://127.0.0.1:8080/auth/oidc/callback";
    let oidc = |url| serve(&["--auth", "oidc", "--oidc-redirect-url", url]);
    assert!(oidc(https).secure_cookies());
    assert!(!oidc(http).secure_cookies());
    assert!(
        serve(&[
            "--auth",
            "oidc",
            "--oidc-redirect-url",
            http,
            "--cookie-secure"
        ])
        .secure_cookies()
    );
    // Other modes are unchanged: only --cookie-secure counts.
    for mode in ["local", "proxy", "none"] {
        assert!(!serve(&["--auth", mode, "--oidc-redirect-url", https]).secure_cookies());
        assert!(serve(&["--auth", mode, "--cookie-secure"]).secure_cookies());
    }
}
