//! Routes never send a state-changing command to a node themselves: container actions, exec
//! sessions and proxy revisions go through `infrapilot_nodes::NodeActions` (guards, dispatch,
//! audit); and they leave the proxy and account workflows to their services. This reads the
//! API crate's sources and fails when one of them builds such a command, calls the router's
//! command-sending functions directly, or does a service's step itself.

#[test]
fn routes_change_nodes_only_through_the_node_action_door() {
    let found = uses_in_api_sources(&[
        "ContainerAction",
        "StartExec",
        "ExecInput",
        ".execute(",
        ".exec_input(",
        ".dispatch(",
        ".insert_command(",
        "durable_command(",
        ".encode_sealed(",
    ]);
    assert!(
        found.is_empty(),
        "state-changing node commands outside infrapilot_nodes::NodeActions:\n{}",
        found.join("\n")
    );
}

/// The proxy workflow (`infrapilot_proxy::service`) and the account workflows
/// (`infrapilot_accounts`) are services the routes call: a route that writes a revision, a host,
/// a certificate, a session, a password or a second factor itself has bypassed them.
#[test]
fn routes_leave_proxy_and_account_workflows_to_their_services() {
    let found = uses_in_api_sources(&[
        ".put_proxy_host(",
        ".delete_proxy_host(",
        ".insert_proxy_revision(",
        ".put_proxy_certificate(",
        ".delete_proxy_certificate(",
        "infrapilot_proxy::render(",
        ".stage_proxy_apply(",
        ".insert_session(",
        ".rotate_session(",
        ".insert_mfa_challenge(",
        ".set_password_hash(",
        ".insert_user(",
        ".set_role(",
        "tx.delete_user(",
        ".enable_totp(",
        ".set_pending_totp(",
        ".replace_backup_codes(",
        "verify_password(",
        "verify_totp(",
        "hash_password(",
        ".revoke_user_sessions(",
        ".revoke_user_api_tokens(",
        ".update_user_profile(",
        ".disable_totp(",
        ".consume_backup_code(",
        ".set_totp_last_step(",
        ".count_mfa_attempt(",
        ".delete_mfa_challenge(",
        ".lock_setup(",
        // The sign-in and setup throttles are the account service's.
        "try_attempt(",
        "forgive_one(",
        "ip_throttle().",
        "account_throttle().",
    ]);
    assert!(
        found.is_empty(),
        "proxy or account workflow steps in the API crate instead of its service:\n{}",
        found.join("\n")
    );
}

/// Lines of host/api/src (comments aside) that name one of `forbidden`, as `path:line: word`.
fn uses_in_api_sources(forbidden: &[&str]) -> Vec<String> {
    let routes = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    let mut read = 0;
    let mut stack = vec![routes];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            read += 1;
            let text = std::fs::read_to_string(&path).unwrap();
            for (n, line) in text.lines().enumerate() {
                if line.trim_start().starts_with("//") {
                    continue;
                }
                for word in forbidden {
                    if names(line, word) {
                        found.push(format!("{}:{}: {word}", path.display(), n + 1));
                    }
                }
            }
        }
    }
    assert!(read > 10, "read only {read} source files");
    found
}

/// Whether `line` has `word` not as part of a longer identifier (`ContainerActionResult` is a
/// response type, not the command).
fn names(line: &str, word: &str) -> bool {
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    line.match_indices(word).any(|(at, _)| {
        let before = line[..at].chars().next_back();
        let after = line[at + word.len()..].chars().next();
        let starts_ident = word.starts_with(ident);
        let ends_ident = word.ends_with(ident);
        let glued_before = starts_ident && before.is_some_and(ident);
        let glued_after = ends_ident && after.is_some_and(ident);
        !(glued_before || glued_after)
    })
}
