//! The console's addresses that other parts of the coordinator link to: a
//! notification links to an execution's page. The console's router serves
//! these paths (`http/console`); this module only spells them.

/// A path segment or query value, percent-encoded.
pub fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The path of an execution's page.
pub fn execution_path(pipeline: &str, id: &str) -> String {
    format!("/pipelines/{}/executions/{}", enc(pipeline), enc(id))
}

/// The address of an execution's page on the console at `base`.
pub fn execution_url(base: &str, pipeline: &str, id: &str) -> String {
    format!(
        "{}{}",
        base.trim_end_matches('/'),
        execution_path(pipeline, id)
    )
}
