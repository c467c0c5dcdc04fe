//! Images from the artifact: a `docker save` archive named by the revision
//! spec is staged from the artifact and streamed to the engine, and the id
//! of the image it holds is read from its `manifest.json` (containers are
//! made from that id, never from a tag another deployment may move).

use bollard::Docker;
use bollard::query_parameters::ImportImageOptions;
use futures::StreamExt;

use crate::deploy::{Deployment, with_member};

/// Streams the `docker save` archive at `path` in the artifact to the
/// engine: what the engine said, and the id of `image` in the archive.
pub(super) async fn load_image(
    docker: &Docker,
    d: &Deployment<'_>,
    path: &str,
    image: &str,
) -> Result<(String, String), String> {
    let artifact = d.artifact.to_path_buf();
    let member = path.to_string();
    let image_name = image.to_string();
    let (file, id) = tokio::task::spawn_blocking(move || {
        let file = with_member(&artifact, &member, |entry| {
            let mut out = tempfile::NamedTempFile::new()
                .map_err(|e| format!("cannot stage the image archive: {e}"))?;
            std::io::copy(entry, &mut out)
                .map_err(|e| format!("cannot stage the image archive: {e}"))?;
            Ok(out)
        })?
        .ok_or_else(|| format!("the artifact has no `{member}` (image_archive)"))?;
        let id = archive_image_id(file.path(), &image_name)?;
        Ok::<_, String>((file, id))
    })
    .await
    .map_err(|e| e.to_string())??;
    let f = file
        .reopen()
        .map_err(|e| format!("cannot read the staged image archive: {e}"))?;
    let mut stream = docker.import_image(
        ImportImageOptions {
            quiet: true,
            ..Default::default()
        },
        bollard::body_try_stream(crate::executor::file_chunks(f)),
        None,
    );
    let mut said = String::new();
    while let Some(item) = stream.next().await {
        let info = item.map_err(|e| format!("the engine refused the image archive: {e}"))?;
        if let Some(err) = info.error.or(info.error_detail.and_then(|e| e.message)) {
            return Err(format!("the engine refused the image archive: {err}"));
        }
        if let Some(s) = info.stream {
            said.push_str(s.trim());
            said.push(' ');
        }
    }
    let said = if said.is_empty() {
        format!("loaded {path}")
    } else {
        said.trim().to_string()
    };
    Ok((format!("{said} ({image} is {id})"), id))
}

/// Largest `manifest.json` of an image archive read.
const MAX_MANIFEST_BYTES: u64 = 1024 * 1024;

/// The id (`sha256:...`, the digest of its configuration) of the image
/// tagged `image` in the `docker save` archive at `path`, from the
/// archive's `manifest.json` (both the classic `<hex>.json` and the OCI
/// layout's `blobs/sha256/<hex>` names of the configuration).
fn archive_image_id(path: &std::path::Path, image: &str) -> Result<String, String> {
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(rename = "Config")]
        config: String,
        #[serde(rename = "RepoTags", default)]
        repo_tags: Option<Vec<String>>,
    }
    let manifest = with_member(path, "manifest.json", |entry| {
        let mut text = Vec::new();
        std::io::Read::read_to_end(
            &mut std::io::Read::take(entry, MAX_MANIFEST_BYTES),
            &mut text,
        )
        .map_err(|e| format!("cannot read the image archive's manifest.json: {e}"))?;
        serde_json::from_slice::<Vec<Entry>>(&text)
            .map_err(|e| format!("the image archive's manifest.json does not read: {e}"))
    })?
    .ok_or("the image archive has no manifest.json: make it with `docker save`")?;
    let tagged = |e: &&Entry| {
        e.repo_tags
            .iter()
            .flatten()
            .any(|t| t == image || t.strip_prefix("docker.io/library/") == Some(image))
    };
    let Some(entry) = manifest.iter().find(tagged) else {
        let tags: Vec<&str> = manifest
            .iter()
            .flat_map(|e| e.repo_tags.iter().flatten())
            .map(String::as_str)
            .take(8)
            .collect();
        return Err(format!(
            "the image archive does not hold `{image}` (it holds: {})",
            if tags.is_empty() {
                "no tagged image".to_string()
            } else {
                tags.join(", ")
            }
        ));
    };
    let hex = entry.config.trim_start_matches("blobs/sha256/");
    let hex = hex.strip_suffix(".json").unwrap_or(hex);
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "the image archive's manifest.json names no image id for `{image}`"
        ));
    }
    Ok(format!("sha256:{}", hex.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive_with(manifest: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().expect("temp");
        let mut tar = tar::Builder::new(file.reopen().expect("reopen"));
        let mut header = tar::Header::new_gnu();
        header.set_size(manifest.len() as u64);
        header.set_mode(0o644);
        tar.append_data(&mut header, "manifest.json", manifest.as_bytes())
            .expect("append");
        tar.finish().expect("finish");
        file
    }

    #[test]
    fn the_image_id_comes_from_the_archive_manifest() {
        let hex = "ab".repeat(32);
        let classic = archive_with(&format!(
            r#"[{{"Config":"{hex}.json","RepoTags":["shop:1.4"],"Layers":[]}}]"#
        ));
        assert_eq!(
            archive_image_id(classic.path(), "shop:1.4"),
            Ok(format!("sha256:{hex}"))
        );
        let oci = archive_with(&format!(
            r#"[{{"Config":"blobs/sha256/{hex}","RepoTags":["docker.io/library/shop:2"]}}]"#
        ));
        assert_eq!(
            archive_image_id(oci.path(), "shop:2"),
            Ok(format!("sha256:{hex}"))
        );
        let err = archive_image_id(classic.path(), "prod:1").expect_err("not in the archive");
        assert!(
            err.contains("does not hold `prod:1` (it holds: shop:1.4)"),
            "{err}"
        );
        let bad = archive_with(r#"[{"Config":"../../etc/passwd","RepoTags":["shop:1.4"]}]"#);
        assert!(archive_image_id(bad.path(), "shop:1.4").is_err());
        assert!(archive_image_id(archive_with("{").path(), "shop:1.4").is_err());
    }
}
