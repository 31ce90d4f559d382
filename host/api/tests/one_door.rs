//! Routes never send a state-changing command to a node themselves: container actions, exec
//! sessions and proxy revisions go through `infrapilot_nodes::NodeActions` (guards, dispatch,
//! audit). This reads the
//! route sources and fails when one of them builds such a command or calls the router's
//! command-sending functions directly.

#[test]
fn routes_change_nodes_only_through_the_node_action_door() {
    let routes = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let forbidden = [
        "ContainerAction",
        "StartExec",
        "ExecInput",
        ".execute(",
        ".exec_input(",
        ".dispatch(",
        ".insert_command(",
        "durable_command(",
        ".encode_sealed(",
    ];
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
    assert!(
        found.is_empty(),
        "state-changing node commands outside infrapilot_nodes::NodeActions:\n{}",
        found.join("\n")
    );
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
