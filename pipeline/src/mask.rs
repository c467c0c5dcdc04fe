//! Masks secret values in what an action printed or wrote: its log (whole
//! lines are scanned, so a value split across two writes is still caught),
//! its deployment report and its output variables; each occurrence is
//! replaced by `***` before anything is written or sent. The one masker of
//! the engine (agents, `ferry exec`) and of the coordinator, which masks
//! output variables again in case an agent did not. The secrets it holds,
//! and the output it holds back, are zeroed when it is dropped.

use zeroize::Zeroize as _;

pub struct Masker {
    secrets: Vec<Vec<u8>>,
    pending: Vec<u8>,
}

/// Shortest line of a multi-line secret masked on its own (shorter ones,
/// like a lone `}`, would mask ordinary output).
const MIN_LINE_MASKED: usize = 6;

/// Longest partial line held back while waiting for its end.
const MAX_PENDING: usize = 64 * 1024;

impl Masker {
    pub fn new<I: IntoIterator<Item = Vec<u8>>>(secrets: I) -> Masker {
        // Output is scanned line by line, so a value is also masked without its
        // trailing newline (a secret set from a file keeps one), and each line
        // of a multi-line value (a key) is masked on its own.
        let mut secrets: Vec<Vec<u8>> = secrets
            .into_iter()
            .flat_map(|s| {
                let trimmed = s.trim_ascii_end().to_vec();
                let lines: Vec<Vec<u8>> = s
                    .split(|b| *b == b'\n')
                    .map(|l| l.trim_ascii().to_vec())
                    .filter(|l| l.len() >= MIN_LINE_MASKED)
                    .collect();
                std::iter::once(s)
                    .chain(std::iter::once(trimmed))
                    .chain(lines)
            })
            .filter(|s| !s.is_empty())
            .collect();
        secrets.sort();
        secrets.dedup();
        // Longest first, so a secret containing another is masked whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Masker {
            secrets,
            pending: Vec::new(),
        }
    }

    /// Masked complete lines from `bytes` (a partial last line waits).
    /// A line longer than [`MAX_PENDING`] is passed on in pieces, each
    /// holding back its last bytes until they cannot be the start of a
    /// secret, so a value that straddles two pieces is still caught.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<u8> {
        if self.secrets.is_empty() {
            return bytes.to_vec();
        }
        self.pending.extend_from_slice(bytes);
        if let Some(i) = self.pending.iter().rposition(|b| *b == b'\n') {
            let ready: Vec<u8> = self.pending.drain(..=i).collect();
            return self.mask(&ready);
        }
        if self.pending.len() <= MAX_PENDING {
            return Vec::new();
        }
        // Secrets starting before `cut` lie wholly inside what is held.
        let longest = self.secrets.first().map_or(0, Vec::len);
        let cut = self.pending.len().saturating_sub(longest.saturating_sub(1));
        let (out, consumed) = self.mask_from(&self.pending, cut);
        self.pending.drain(..consumed);
        out
    }

    /// Whatever is still held back, masked.
    pub fn finish(&mut self) -> Vec<u8> {
        let rest = std::mem::take(&mut self.pending);
        self.mask(&rest)
    }

    /// `text` with every secret replaced (a value whose masking would
    /// split a character keeps the replacement character there).
    pub fn mask_text(&self, text: &str) -> String {
        String::from_utf8_lossy(&self.mask(text.as_bytes())).into_owned()
    }

    /// `bytes` with every secret replaced.
    pub fn mask(&self, bytes: &[u8]) -> Vec<u8> {
        self.mask_from(bytes, bytes.len()).0
    }

    /// Masks `bytes` from the start, one left-to-right pass taking the
    /// longest secret at each position, until position `cut`; a secret
    /// that starts before `cut` is replaced whole. Returns the masked
    /// bytes and how many of `bytes` they stand for.
    fn mask_from(&self, bytes: &[u8], cut: usize) -> (Vec<u8>, usize) {
        let mut out = Vec::with_capacity(cut);
        let mut i = 0;
        while i < cut {
            // `secrets` is sorted longest first.
            match self.secrets.iter().find(|s| bytes[i..].starts_with(s)) {
                Some(s) => {
                    out.extend_from_slice(b"***");
                    i += s.len();
                }
                None => {
                    out.push(bytes[i]);
                    i += 1;
                }
            }
        }
        (out, i)
    }
}

impl Drop for Masker {
    fn drop(&mut self) {
        for s in &mut self.secrets {
            s.zeroize();
        }
        self.pending.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked_even_across_writes() {
        let mut m = Masker::new([b"hunter2".to_vec(), b"hunter2-long".to_vec()]);
        let mut out = m.push(b"token is hun");
        out.extend(m.push(b"ter2 and hunter2-long\nnext "));
        out.extend(m.finish());
        assert_eq!(String::from_utf8_lossy(&out), "token is *** and ***\nnext ");
        assert_eq!(Masker::new(Vec::<Vec<u8>>::new()).push(b"as is"), b"as is");
    }

    #[test]
    fn a_secret_straddling_a_flush_of_a_long_line_is_masked() {
        let secret = b"straddling-secret-value".to_vec();
        for offset in 0..secret.len() {
            let mut m = Masker::new([secret.clone()]);
            // Ends `offset` bytes into the secret, just past the flush point.
            let mut first = vec![b'x'; MAX_PENDING + 1 - offset];
            first.extend_from_slice(&secret[..offset]);
            let mut out = m.push(&first);
            out.extend(m.push(&secret[offset..]));
            out.extend(m.push(b" tail\n"));
            out.extend(m.finish());
            let text = String::from_utf8_lossy(&out);
            assert!(!text.contains("straddling"), "offset {offset}");
            assert!(text.ends_with("*** tail\n"), "offset {offset}");
            assert_eq!(out.len(), MAX_PENDING + 1 - offset + 3 + 6);
        }
        // Output without line ends is not held without bound.
        let mut m = Masker::new([secret]);
        let out = m.push(&vec![b'y'; 3 * MAX_PENDING]);
        assert!(out.len() >= 3 * MAX_PENDING - 64, "{}", out.len());
    }

    #[test]
    fn values_with_a_newline_and_multi_line_keys_are_masked() {
        let mut m = Masker::new([
            b"s3cret-from-file\n".to_vec(),
            b"-----BEGIN KEY-----\nAAAAB3NzaC1yc2E\nQQQQ+long/line==\n-----END KEY-----\n".to_vec(),
        ]);
        let mut out = m.push(b"password=s3cret-from-file done\n");
        out.extend(m.push(b"line AAAAB3NzaC1yc2E\n"));
        out.extend(m.finish());
        let text = String::from_utf8_lossy(&out);
        assert!(!text.contains("s3cret"), "{text}");
        assert!(!text.contains("AAAAB3"), "{text}");
    }

    #[test]
    fn every_host_credential_is_masked() {
        let spec = crate::spec::DeploySpec {
            hosts: vec![
                crate::spec::DeployHost {
                    private_key: b"-----BEGIN OPENSSH PRIVATE KEY-----\nAAAAkey\n".to_vec(),
                    ..Default::default()
                },
                crate::spec::DeployHost {
                    tls_bundle: b"bundle-bytes".to_vec(),
                    ..Default::default()
                },
                crate::spec::DeployHost::default(),
            ],
            ..Default::default()
        };
        let masker = Masker::new(spec.credentials());
        let out = masker.mask(b"key line AAAAkey and bundle-bytes\n");
        assert_eq!(String::from_utf8_lossy(&out), "key line *** and ***\n");
        assert_eq!(spec.credentials().count(), 2);
    }
}
