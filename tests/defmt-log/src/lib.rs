//! Reads a defmt stream the way `defmt-print` would, for a snapshot test:
//! frames decoded against the ELF that produced them ([`decode`]), figures
//! that change from run to run replaced by placeholders ([`normalise`]),
//! and a line diff for a mismatch ([`diff`]). The QEMU run and the snapshot
//! are in `tests/boot_log.rs`.

use defmt_decoder::{DecodeError, Encoding, Table};
use regex::Regex;

/// The log lines of `stream`, one per frame, as `LEVEL message` (the level
/// in capitals, padded to five), in the order sent. Fails on a malformed or
/// truncated frame, or an ELF without defmt's table.
pub fn decode(elf: &[u8], stream: &[u8]) -> Result<Vec<String>, String> {
    let table = Table::parse(elf)
        .map_err(|e| format!("cannot read the defmt table of the ELF: {e:#}"))?
        .ok_or("the ELF has no .defmt section: not a defmt build")?;
    // rzCOBS (defmt's default) ends every frame with a zero byte; bytes after
    // the last one are a frame cut short.
    if table.encoding() == Encoding::Rzcobs && stream.last().is_some_and(|&b| b != 0) {
        return Err("the stream ends inside a frame".into());
    }
    let mut decoder = table.new_stream_decoder();
    decoder.received(stream);
    let mut lines = vec![];
    loop {
        match decoder.decode() {
            Ok(frame) => {
                let level = frame.level().map_or("", |l| l.as_str()).to_uppercase();
                lines.push(format!("{level:<5} {}", frame.display_message()));
            }
            Err(DecodeError::UnexpectedEof) => return Ok(lines),
            Err(DecodeError::Malformed) => return Err(format!("malformed frame after {} lines", lines.len())),
        }
    }
}

/// Figures that change from run to run or with the link layout, each with
/// its placeholder and why it is not compared.
const VARIABLE: [(&str, &str, &str); 2] = [
    (
        r"\b\d+ instructions\b",
        "<n> instructions",
        "SysTick counts follow the host's speed unless QEMU runs with -icount",
    ),
    (
        r"\bstack \d+ B \(0x[0-9a-f]+\.\.0x[0-9a-f]+\)",
        "stack <n> B (<addr>..<addr>)",
        "the stack is what the statics leave of RAM: it moves with the link layout",
    ),
];

/// `line` with the figures of [`VARIABLE`] replaced by their placeholders;
/// everything else (artifact, CRC, sizes, grid) is compared as logged.
pub fn normalise(line: &str) -> String {
    let mut out = line.to_string();
    for (pattern, placeholder, _why) in VARIABLE {
        out = Regex::new(pattern).expect("a valid pattern").replace_all(&out, placeholder).into_owned();
    }
    out
}

/// A line diff from `expected` to `got` over their longest common
/// subsequence: `-` a line only expected, `+` one only got (after the `-`
/// lines it replaces), two spaces one in both.
pub fn diff(expected: &[String], got: &[String]) -> String {
    let (n, m) = (expected.len(), got.len());
    // lcs[i][j]: longest common subsequence of expected[i..] and got[j..].
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if expected[i] == got[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, String::new());
    while i < n || j < m {
        if i < n && j < m && expected[i] == got[j] {
            out += &format!("  {}\n", expected[i]);
            (i, j) = (i + 1, j + 1);
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out += &format!("- {}\n", expected[i]);
            i += 1;
        } else {
            out += &format!("+ {}\n", got[j]);
            j += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(s: &str) -> Vec<String> {
        s.lines().map(String::from).collect()
    }

    #[test]
    fn normalise_replaces_only_the_variable_figures() {
        let cases = [
            (
                "crc32 0x1234abcd (checked, 19851234 instructions), grid 32x32",
                "crc32 0x1234abcd (checked, <n> instructions), grid 32x32",
            ),
            (
                "fields 2x4096 B, stack 42456 B (0x20000000..0x2000a5d8), RAM budget 262144 B",
                "fields 2x4096 B, stack <n> B (<addr>..<addr>), RAM budget 262144 B",
            ),
            ("workspace 208256 B (static)", "workspace 208256 B (static)"),
        ];
        for (input, want) in cases {
            assert_eq!(normalise(input), want, "input: {input}");
        }
    }

    #[test]
    fn diff_marks_changed_added_and_removed_lines() {
        let got = diff(&lines("a\nb\nc"), &lines("a\nB\nc\nd"));
        assert_eq!(got, "  a\n- b\n+ B\n  c\n+ d\n", "got:\n{got}");
        assert_eq!(diff(&lines("a\nb"), &lines("b")), "- a\n  b\n");
        assert_eq!(diff(&lines("a"), &lines("a")), "  a\n");
    }

    #[test]
    fn decode_refuses_an_elf_without_defmt() {
        assert!(decode(b"not an elf", &[]).is_err());
    }
}
