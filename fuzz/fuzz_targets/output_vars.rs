//! Fuzzes an action's output variables file (`ferry_pipeline::vars::
//! parse_output_file`, what a repository's build writes to
//! `$FERRY_OUTPUT_VARS`): no panic; what it accepts passes the
//! coordinator's own check; and its values reach later commands only as
//! data — the rewritten command text does not depend on them.
#![no_main]

use ferry_pipeline::vars::{Ref, check_outputs, commands_as_data, parse_output_file};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(vars) = parse_output_file(data) else {
        return;
    };
    assert!(check_outputs(&vars).is_ok(), "accepted but refused later");
    let commands: Vec<String> = vars
        .keys()
        .map(|k| format!("echo #{{s.a.{k}}} \"x#{{s.a.{k}}}\""))
        .collect();
    let value = |r: &Ref| match r {
        Ref::Output { name, .. } => vars.get(name).cloned(),
        Ref::Pipeline(_) | Ref::Matrix(_) | Ref::HashFiles(_) => None,
    };
    let (texts, env) = commands_as_data(&commands, value);
    let (fixed, _) = commands_as_data(&commands, |r| value(r).map(|_| String::new()));
    assert_eq!(texts, fixed, "a value changed the command text");
    assert_eq!(env.len(), vars.len());
});
