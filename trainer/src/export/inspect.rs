//! What an artifact holds, in words (`ddis inspect`), and whether it fits
//! the reference device's flash and RAM beside the firmware.

use std::fmt::Write as _;

use anyhow::{Result, anyhow};
use ddis_runtime::artifact::{self, Artifact};
use ddis_runtime::sampler;

fn describe_net(out: &mut String, name: &str, net: &ddis_runtime::operator::Operator<'_>) {
    let s = net.shape();
    let _ = writeln!(
        out,
        "{name}: width {}, modes {}, layers {}, pad {} (padded {}x{}), projection {}; {} parameters, {} weights, {} bytes",
        s.width,
        s.modes,
        s.layers,
        s.pad,
        s.padded(),
        s.padded(),
        s.proj_width,
        s.params(),
        if net.is_int8() { "int8" } else { "f32" },
        net.bytes()
    );
}

/// Flash of the reference device (an STM32F4-class Cortex-M4F).
pub const DEVICE_FLASH_BYTES: usize = 1024 * 1024;
/// RAM of the reference device.
pub const DEVICE_RAM_BYTES: usize = 256 * 1024;
/// Flash the reference firmware needs besides the artifact (measured
/// 84 094 B of code and constants, rounded up).
pub const FIRMWARE_CODE_BYTES: usize = 96 * 1024;
/// RAM the reference firmware needs besides the sampler's workspace and
/// its two output fields: frame buffers and the smallest stack it accepts
/// (firmware/src/main.rs).
pub const FIRMWARE_RAM_BYTES: usize = 32 * 1024;

/// Why an artifact will not fit the reference device (empty when it fits):
/// flash for the artifact plus the firmware, RAM for the workspace, the
/// two output fields and the firmware's buffers and stack.
pub fn budget_warnings(bytes: &[u8]) -> Result<Vec<String>> {
    let art = Artifact::parse(bytes).map_err(|e| anyhow!("invalid artifact: {e}"))?;
    Ok(budget_check(art.len_bytes(), art.workspace_bytes(), art.n()))
}

/// [`budget_warnings`] from the sizes: artifact bytes, workspace bytes (if
/// the artifact can sample) and the grid.
pub fn budget_check(artifact_bytes: usize, workspace_bytes: Option<usize>, n: usize) -> Vec<String> {
    let mut out = vec![];
    let flash = artifact_bytes + FIRMWARE_CODE_BYTES;
    if flash > DEVICE_FLASH_BYTES {
        out.push(format!(
            "the artifact ({artifact_bytes} B) plus the firmware (about {FIRMWARE_CODE_BYTES} B) needs {flash} B of flash, more than the reference device's {DEVICE_FLASH_BYTES} B: the firmware will not link (fewer parameters, or int8)"
        ));
    }
    if let Some(ws) = workspace_bytes {
        let ram = ws + 2 * n * n * 4 + FIRMWARE_RAM_BYTES;
        if ram > DEVICE_RAM_BYTES {
            out.push(format!(
                "the sampler's workspace ({ws} B) plus two output fields and the firmware's buffers and stack needs {ram} B of RAM, more than the reference device's {DEVICE_RAM_BYTES} B: the firmware will not link (a smaller grid, fewer sensors with --max-sensors, or a narrower prior)"
            ));
        }
    }
    out
}

/// A human-readable description of an artifact: kind, grid, shapes,
/// parameter counts, sizes, workspace, CRC and schedule. Errors (damaged,
/// wrong version, bad shapes) carry the runtime's message.
pub fn inspect(bytes: &[u8]) -> Result<String> {
    let art = Artifact::parse(bytes).map_err(|e| anyhow!("invalid artifact ({} bytes): {e}", bytes.len()))?;
    let mut out = String::new();
    let kind = art.kind();
    let names: Vec<&str> = [
        (artifact::KIND_SURROGATE, "surrogate"),
        (artifact::KIND_PRIOR, "prior"),
        (artifact::KIND_NOISE, "noise"),
        (artifact::KIND_SCHEDULE, "schedule"),
        (artifact::KIND_PHYSICS, "exact physics"),
    ]
    .iter()
    .filter(|(f, _)| kind & f != 0)
    .map(|&(_, name)| name)
    .collect();
    let _ = writeln!(out, "format: DDIS version {}", artifact::FORMAT_VERSION);
    let _ = writeln!(out, "problem: {}", art.problem());
    let d = art.data();
    if d.phase_low != 0.0 || d.phase_high != 0.0 {
        let _ =
            writeln!(out, "phases: a = {} below the GRF level {}, {} above", d.phase_low, d.threshold, d.phase_high);
    }
    let _ = writeln!(
        out,
        "training data: GRF alpha {}, tau {}{}; u in [{:.4e}, {:.4e}]",
        d.grf_alpha,
        d.grf_tau,
        if d.helmholtz_k != 0.0 { format!(", Helmholtz k {}", d.helmholtz_k) } else { String::new() },
        d.u_min,
        d.u_max
    );
    let _ = writeln!(out, "kind: {kind:#04x} ({})", names.join(" + "));
    let _ = writeln!(out, "grid: {0} x {0}", art.n());
    let _ = writeln!(out, "artifact: {} bytes ({:.1} KiB)", art.len_bytes(), art.len_bytes() as f64 / 1024.0);
    let _ = writeln!(out, "crc32: {:#010x} (verified)", art.crc());
    if let Some(f) = art.surrogate() {
        describe_net(&mut out, "surrogate", f.net());
        let (am, asd, um, usd) = f.normalization();
        let _ = writeln!(out, "  normalisation: a {am} +- {asd}, u {um} +- {usd}");
    }
    if let Some(p) = art.prior() {
        describe_net(&mut out, "prior", p.net());
        let (m, s) = p.normalization();
        let _ = writeln!(out, "  normalisation: a {m} +- {s}; sigma_data {}", p.sigma_data());
    }
    if let Some(nz) = art.noise() {
        let _ = writeln!(out, "noise: {0} x {0} square-root kernel, {1} bytes", nz.n(), nz.bytes());
    }
    if let Some(p) = art.physics() {
        let (factor, solve) = p.factor_solve_madds();
        let _ = writeln!(
            out,
            "physics: exact finite differences on {0} x {0}, banded L D L^T ({factor} multiply-adds per factorisation, {solve} per solve); readings' unit floor {1}",
            p.n(),
            p.u_floor()
        );
    }
    if let Some(s) = art.schedule() {
        let inner = match s.step() {
            ddis_runtime::schedule::Step::Langevin => "Langevin steps",
            ddis_runtime::schedule::Step::GaussNewton => "Gauss-Newton iterations",
        };
        let _ = writeln!(
            out,
            "schedule: {} levels x {} {inner} (one ODE step), tau {} (noise width {}), clamp {}, at most {} sensors, {} bytes",
            s.levels(),
            s.langevin(),
            s.tau(),
            s.noise_width(),
            s.clamp(),
            s.max_sensors(),
            s.bytes()
        );
        let _ = writeln!(out, "  level   sigma        lr           sqrt(2 lr)   c_skip   c_out    r");
        for i in 0..s.levels() {
            if let Ok(l) = s.level(i) {
                let _ = writeln!(
                    out,
                    "  {i:>5}   {:<11.4e}  {:<11.4e}  {:<11.4e}  {:<7.4}  {:<7.4}  {:<7.4}",
                    l.sigma, l.lr, l.noise_std, l.c_skip, l.c_out, l.r
                );
            }
        }
    }
    match art.workspace_bytes() {
        Some(b) => {
            let _ = writeln!(out, "workspace: {b} bytes ({:.1} KiB) for the sampler", b as f64 / 1024.0);
            for k in [31usize, 100] {
                if let Some(f) = sampler::flops(&art, k) {
                    let _ = writeln!(out, "  {:.3e} FLOP per posterior sample with {k} sensors", f as f64);
                }
            }
        }
        None => {
            let _ = writeln!(out, "workspace: n/a (not a complete sampler artifact)");
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_device_budget_warns_only_past_its_limits() {
        // The shipped image's sizes fit (311 570 B, 210 144 B of workspace, 32 x 32).
        assert!(budget_check(311_570, Some(210_144), 32).is_empty());
        let flash = budget_check(DEVICE_FLASH_BYTES - FIRMWARE_CODE_BYTES + 1, None, 32);
        assert_eq!(flash.len(), 1);
        assert!(flash[0].contains("flash"), "{flash:?}");
        let ram = budget_check(1000, Some(DEVICE_RAM_BYTES), 32);
        assert_eq!(ram.len(), 1);
        assert!(ram[0].contains("RAM") && ram[0].contains("--max-sensors"), "{ram:?}");
    }
}
