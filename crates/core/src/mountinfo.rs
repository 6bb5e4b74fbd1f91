//! `/proc/self/mountinfo` as the Linux backends read it to prove that
//! nothing is mounted below a sandbox's directory before it is deleted
//! (deleting through a bind mount would delete host data). Pure text
//! handling; the caller reads the file.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

/// Every mount point in `mountinfo` (its fifth field), with the kernel's
/// octal escapes of space, tab, newline and backslash (`\040`...) undone,
/// so the paths compare equal to the real ones.
pub fn mount_points(mountinfo: &str) -> impl Iterator<Item = PathBuf> + '_ {
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape)
}

/// The mount points at or below `dir`, compared by path components (a
/// string prefix would take `/s/ab` for a parent of `/s/abc`'s mounts).
pub fn mounts_under(mountinfo: &str, dir: &Path) -> Vec<PathBuf> {
    mount_points(mountinfo)
        .filter(|m| m.starts_with(dir))
        .collect()
}

fn unescape(field: &str) -> PathBuf {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        if let Some(d) = octal {
            // Three octal digits: at most 0o777, which a u16 holds; the
            // kernel only writes byte values (0o040, 0o011, 0o012, 0o134).
            let v =
                u16::from(d[0] - b'0') * 64 + u16::from(d[1] - b'0') * 8 + u16::from(d[2] - b'0');
            out.push(u8::try_from(v).unwrap_or(u8::MAX));
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    PathBuf::from(OsString::from_vec(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
40 22 0:40 / /srv/state\\040dir/sandboxes/abc/root rw - tmpfs tmpfs rw
41 22 0:41 / /srv/state/sandboxes/abcd/x rw - tmpfs tmpfs rw
42 22 0:42 / /srv/tab\\011and\\134back rw - tmpfs tmpfs rw
43 22 0:43 / /srv/state/sandboxes/ef rw - tmpfs tmpfs rw
";

    #[test]
    fn mounts_under_a_directory() {
        let cases: &[(&str, &[&str])] = &[
            // Escaped space: the path with a real space matches.
            (
                "/srv/state dir/sandboxes/abc",
                &["/srv/state dir/sandboxes/abc/root"],
            ),
            // A string prefix of another sandbox's directory is not its parent.
            ("/srv/state/sandboxes/abc", &[]),
            (
                "/srv/state/sandboxes/abcd",
                &["/srv/state/sandboxes/abcd/x"],
            ),
            // The directory itself being a mount point counts.
            ("/srv/state/sandboxes/ef", &["/srv/state/sandboxes/ef"]),
            ("/srv/tab\tand\\back", &["/srv/tab\tand\\back"]),
            ("/nowhere", &[]),
        ];
        for (dir, want) in cases {
            let got = mounts_under(INFO, Path::new(dir));
            let want: Vec<PathBuf> = want.iter().map(PathBuf::from).collect();
            assert_eq!(got, want, "{dir}");
        }
    }
}
