//! Draws each screen at 120x40 into `assets/screenshots/*.png`, from the
//! same fixed states the snapshot tests use:
//! `cargo run -p molt-console --example screenshots`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use crossterm::event::KeyCode;
use font8x8::UnicodeFonts;
use molt_console::app::{App, Event};
use molt_console::net::Purpose;
use molt_console::ui;
use molt_protocol::update::{RunPhase, UpdateStatus};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::{Buffer, Cell};
use ratatui::style::{Color, Modifier};
use serde_json::json;

const WIDTH: u16 = 120;
const HEIGHT: u16 = 40;
/// Pixels per cell: the 8x8 glyph with each row drawn twice.
const CELL_W: usize = 8;
const CELL_H: usize = 16;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/screenshots");
    std::fs::create_dir_all(&dir)?;
    for (name, app) in scenes()? {
        let mut terminal = Terminal::new(TestBackend::new(WIDTH, HEIGHT))?;
        terminal.draw(|frame| ui::render(&app, frame))?;
        let path = dir.join(format!("{name}.png"));
        write_png(terminal.backend().buffer(), &path)?;
        println!("{}", path.display());
    }
    Ok(())
}

fn scenes() -> Result<Vec<(&'static str, App)>, serde_json::Error> {
    let base = Instant::now();
    let mut scenes = vec![("overview", connected_app(status(), base))];

    let mut app = connected_app(status(), base);
    app.handle(key('u'));
    app.handle(response(
        Purpose::UpdateStatus,
        update_status("0.1.0", None, None),
    ));
    app.handle(response(Purpose::UpdatePreview, dry_run("0.2.0")));
    app.handle(key('n'));
    type_text(&mut app, "weekly patch");
    app.handle(press(KeyCode::Enter));
    scenes.push(("update-dialog", app.clone()));

    app.handle(key('l'));
    app.handle(press(KeyCode::Enter));
    app.set_now(base + Duration::from_millis(300));
    for (name, state, exit) in [
        ("resolve", "started", None),
        ("resolve", "finished", Some(0)),
        ("stage", "started", None),
        ("stage", "finished", Some(0)),
        ("install", "started", None),
    ] {
        app.handle(progress(RunPhase::Running, Some((name, state, exit))));
    }
    app.set_now(base + Duration::from_secs(13));
    app.handle(Event::Tick);
    scenes.push(("update-running", app.clone()));

    let mut failed = app.clone();
    failed.handle(progress(
        RunPhase::Running,
        Some(("install", "finished", Some(1))),
    ));
    failed.handle(response(
        Purpose::UpdateRun,
        run_result(
            UpdateStatus::Error,
            "0.2.0",
            vec![
                step_record("resolve", 0, ""),
                step_record("stage", 0, ""),
                step_record("install", 1, "npm error code E404\nnpm error 404 Not Found - GET http://127.0.0.1:4873/@molt%2fmoltd/-/moltd-0.2.0.tgz"),
            ],
        ),
    ));
    let mut record = run_record("run-8", RunPhase::RolledBack, "0.1.0", "0.2.0");
    record.reason = Some("install-failed".into());
    failed.handle(response(
        Purpose::UpdateStatus,
        update_status("0.1.0", None, Some(record)),
    ));
    scenes.push(("update-failed", failed));

    app.handle(progress(
        RunPhase::Running,
        Some(("install", "finished", Some(0))),
    ));
    app.handle(response(
        Purpose::UpdateRun,
        run_result(UpdateStatus::Ok, "0.2.0", Vec::new()),
    ));
    app.handle(closed(1012, "update.run"));
    app.handle(successor_connected("0.2.0", 37));
    app.handle(verified_status("0.2.0"));
    scenes.push(("update-verified", app));

    let mut app = connected_app(status(), base);
    app.handle(key('h'));
    let mut rolled_back = run_record("run-9", RunPhase::RolledBack, "0.1.0", "0.2.0");
    rolled_back.reason = Some("restart-unhealthy".into());
    rolled_back.note = Some("weekly patch".into());
    rolled_back.steps = vec![step_record("install", 0, ""), step_record("verify", 1, "")];
    rolled_back.finished_at = Some(GATEWAY_NOW - 60_000);
    let verified = run_record("run-7", RunPhase::Verified, "0.0.9", "0.1.0");
    app.handle(response(
        Purpose::History,
        json!({"runs": [rolled_back, verified]}),
    ));
    scenes.push(("history", app));

    // A version that died at start, as a real moltd reports it.
    let mut app = connected_app(status(), base);
    app.handle(key('h'));
    app.handle(response(
        Purpose::History,
        recorded_pinned("update-history-after-rollback"),
    ));
    scenes.push(("history-died-at-start", app));
    let rolled_back = serde_json::from_value(recorded_pinned("status-after-rollback"))?;
    scenes.push(("overview-died-at-start", connected_app(rolled_back, base)));

    let mut app = connected_app(status(), base);
    app.handle(key('a'));
    app.handle(response(Purpose::Audit, audit_page()));
    app.handle(key('j'));
    scenes.push(("audit", app));

    let mut app = connected_app(status(), base);
    app.handle(key('c'));
    app.handle(response(
        Purpose::ConfigGet,
        config_value("3f9a0c1b2d4e5f60718293a4"),
    ));
    scenes.push(("config", app));

    let mut app = connected_app(status(), base);
    app.handle(key('l'));
    let lines: Vec<String> = (0..40)
        .map(|i| format!("2026-11-24T18:52:{i:02}.000000Z  INFO molt_daemon::server: request done method=status"))
        .collect();
    app.handle(response(
        Purpose::LogsTail,
        json!({"file": "/home/op/.openclaw/logs/moltd.log.2026-11-24", "lines": lines, "following": true}),
    ));
    scenes.push(("logs", app));

    let mut app = connected_app(status(), base);
    app.handle(key('?'));
    scenes.push(("help", app));
    Ok(scenes)
}

fn rgb(color: Color, fallback: [u8; 3]) -> [u8; 3] {
    match color {
        Color::Reset => fallback,
        Color::Black => [0, 0, 0],
        Color::Red => [0xe0, 0x5a, 0x5a],
        Color::Green => [0x6a, 0xc0, 0x6a],
        Color::Yellow => [0xe0, 0xc0, 0x50],
        Color::Blue => [0x5a, 0x8a, 0xe0],
        Color::Magenta => [0xc0, 0x6a, 0xc0],
        Color::Cyan => [0x50, 0xc8, 0xd8],
        Color::Gray => [0xa8, 0xa8, 0xa8],
        Color::DarkGray => [0x70, 0x70, 0x70],
        Color::White => [0xf0, 0xf0, 0xf0],
        Color::Rgb(r, g, b) => [r, g, b],
        _ => fallback,
    }
}

const FG: [u8; 3] = [0xd8, 0xd8, 0xd8];
const BG: [u8; 3] = [0x1c, 0x1c, 0x20];

/// The 8x8 glyph for a cell; symbols the font lacks get a look-alike.
fn glyph(symbol: &str) -> [u8; 8] {
    let c = symbol.chars().next().unwrap_or(' ');
    let c = match c {
        '→' => '>',
        '←' => '<',
        '✓' => '+',
        '✗' => 'x',
        '–' => '-',
        '…' => '.',
        '▏' => '|',
        '⠀'..='⣿' => '*',
        other => other,
    };
    font8x8::BASIC_FONTS
        .get(c)
        .or_else(|| font8x8::BOX_FONTS.get(c))
        .or_else(|| font8x8::BLOCK_FONTS.get(c))
        .or_else(|| font8x8::LATIN_FONTS.get(c))
        .unwrap_or_else(|| font8x8::BASIC_FONTS.get('?').unwrap_or([0; 8]))
}

fn colors(cell: &Cell) -> ([u8; 3], [u8; 3]) {
    let mut fg = rgb(cell.fg, FG);
    let mut bg = rgb(cell.bg, BG);
    if cell.modifier.contains(Modifier::REVERSED) {
        std::mem::swap(&mut fg, &mut bg);
    }
    if cell.modifier.contains(Modifier::DIM) {
        fg = fg.map(|v| ((u16::from(v) + u16::from(BG[0])) / 2) as u8);
    }
    (fg, bg)
}

fn write_png(buffer: &Buffer, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let area = buffer.area;
    let (w, h) = (
        usize::from(area.width) * CELL_W,
        usize::from(area.height) * CELL_H,
    );
    let mut pixels = vec![0u8; w * h * 3];
    for y in 0..area.height {
        for x in 0..area.width {
            let cell = &buffer[(x, y)];
            let (fg, bg) = colors(cell);
            // Box lines one pixel wide vanish when scaled down: thicken them.
            let boxed = cell
                .symbol()
                .chars()
                .next()
                .is_some_and(|c| ('─'..='╿').contains(&c));
            let bold = boxed || cell.modifier.contains(Modifier::BOLD);
            let rows = glyph(cell.symbol());
            for (gy, row) in rows.iter().enumerate() {
                // Bold: each lit pixel also lights its right neighbour.
                let bits = if bold { row | (row << 1) } else { *row };
                for gx in 0..CELL_W {
                    let lit = bits & (1 << gx) != 0;
                    let color = if lit { fg } else { bg };
                    for dy in 0..2 {
                        let px = usize::from(x) * CELL_W + gx;
                        let py = usize::from(y) * CELL_H + gy * 2 + dy;
                        let i = (py * w + px) * 3;
                        pixels[i..i + 3].copy_from_slice(&color);
                    }
                }
            }
        }
    }
    let file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut encoder = png::Encoder::new(file, w as u32, h as u32);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::Best);
    encoder.write_header()?.write_image_data(&pixels)?;
    Ok(())
}
