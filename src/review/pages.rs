//! The review page's HTML (maud templates, escaped by construction): the
//! layout, the grid with its filters and counts, one card, and a
//! picture's page.
//!
//! Owns: markup and the names of the element ids and classes the
//! vendored script (`assets/review.js`) and the tests look for.
//!
//! Must not: query anything or touch the disk (handlers pass in what the
//! page shows).

use maud::{html, Markup, DOCTYPE};

use super::files::{self, Which};
use crate::store::{Entry, ReviewFilter};

/// The outcomes the page knows by name (filters, counts), in display order.
pub const OUTCOMES: [&str; 4] = ["succeeded", "duplicate", "rejected", "failed"];

/// What the top of every page shows.
pub struct Top {
    /// Since this start, as `/metrics` counts them: (outcome, count).
    pub since_start: Vec<(&'static str, u64)>,
    /// Paused providers.
    pub paused: Vec<Paused>,
}

/// A paused provider: what to do (RECHARGE, FIX THE KEY, unreachable)
/// and what it said. Its files stay queued.
pub struct Paused {
    pub name: String,
    pub todo: &'static str,
    pub why: String,
}

/// What the grid page shows.
pub struct Grid<'a> {
    pub top: Top,
    pub filter: &'a ReviewFilter,
    /// The filter as a query string (no `before`), for links.
    pub query: String,
    /// The form's date fields as typed (YYYY-MM-DD).
    pub from: &'a str,
    pub to: &'a str,
    pub entries: &'a [Entry],
    /// Indexed outcomes matching the filter (its outcome aside), by event.
    pub counts: &'a [(String, i64)],
    pub inboxes: &'a [String],
    pub providers: &'a [String],
    /// The newest indexed id (live updates start after it), when this is
    /// the first page.
    pub live_after: Option<i64>,
    /// Id for the "older" link.
    pub older: Option<i64>,
}

fn layout(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · cutout review" }
                link rel="stylesheet" href="/assets/review.css";
                script src="/assets/review.js" defer {}
                script src="/review-actions.js" defer {}
            }
            body.bg-checker {
                (body)
            }
        }
    }
}

fn top(t: &Top) -> Markup {
    html! {
        header.top {
            a.brand href="/" { "cutout review" }
            span.since title="Since this start of the daemon; the same numbers as /metrics" {
                "since start: "
                @for (name, n) in &t.since_start {
                    span.count id={ "since-" (name) } data-count=(n) { (n) " " (name) }
                }
            }
            span.bgs {
                "background: "
                button type="button" data-bg="checker" { "checker" }
                button type="button" data-bg="white" { "white" }
                button type="button" data-bg="black" { "black" }
            }
        }
        @for p in &t.paused {
            div.paused role="alert" {
                strong { "provider " (p.name) " is paused: " (p.todo) } " — " (p.why)
                " (its files stay queued; it resumes by itself)"
            }
        }
    }
}

fn select(name: &str, label: &str, options: &[String], current: Option<&String>) -> Markup {
    html! {
        label { (label) " "
            select name=(name) {
                option value="" { "all" }
                @for o in options {
                    option value=(o) selected[current == Some(o)] { (o) }
                }
            }
        }
    }
}

/// `/`: the grid.
pub fn grid(g: &Grid<'_>) -> Markup {
    let f = g.filter;
    let outcomes: Vec<String> = OUTCOMES.iter().map(|s| s.to_string()).collect();
    let body = html! {
        (top(&g.top))
        form.filters method="get" action="/" {
            (select("inbox", "inbox", g.inboxes, f.inbox.as_ref()))
            (select("outcome", "outcome", &outcomes, f.event.as_ref()))
            (select("provider", "provider", g.providers, f.provider.as_ref()))
            label { "from " input type="date" name="from" value=(g.from); }
            label { "to " input type="date" name="to" value=(g.to); }
            label { "name " input type="search" name="q" value=[f.name.as_deref()] placeholder="part of the name"; }
            button type="submit" { "filter" }
            a href="/" { "clear" }
        }
        nav.counts {
            @for (event, n) in g.counts {
                a.count.{ "ev-" (event) } id={ "count-" (event) } data-count=(n)
                    href={ "/?" (with_outcome(&g.query, event)) } { (n) " " (event) }
            }
        }
        main.grid id="grid" data-live-after=[g.live_after] data-query=(g.query) {
            @for e in g.entries { (card(e)) }
        }
        @if g.entries.is_empty() { p.empty { "No outcomes match." } }
        nav.pager {
            @if let Some(id) = g.older {
                a id="older" href={ "/?" (g.query) "&before=" (id) } { "older →" }
            }
        }
    };
    layout("outcomes", body)
}

/// The query string with its outcome set to `event`.
fn with_outcome(query: &str, event: &str) -> String {
    let mut parts: Vec<String> = query
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("outcome="))
        .map(str::to_string)
        .collect();
    parts.push(format!("outcome={event}"));
    parts.join("&")
}

/// The file name of an input path.
fn base_name(input: &str) -> &str {
    input.rsplit('/').next().unwrap_or(input)
}

/// A human size.
fn size(bytes: Option<u64>) -> String {
    match bytes {
        None => String::new(),
        Some(b) if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1 << 20) as f64),
        Some(b) if b >= 1 << 10 => format!("{:.0} KiB", b as f64 / 1024.0),
        Some(b) => format!("{b} B"),
    }
}

/// One grid card.
pub fn card(e: &Entry) -> Markup {
    let has_out = !files::outputs(e).is_empty();
    let main_pic = if has_out {
        Which::Output(0)
    } else {
        Which::Original
    };
    html! {
        article.card.{ "ev-" (e.event) } data-id=(e.id) data-job=(e.job) data-outcome=(e.event) tabindex="0" {
            a.pics href={ "/p/" (e.id) } {
                img.cut loading="lazy" alt={ "cut-out of " (base_name(&e.input)) }
                    src={ "/thumb/" (e.id) "/" (main_pic.as_param()) };
                @if has_out {
                    img.orig loading="lazy" alt={ "original of " (base_name(&e.input)) }
                        src={ "/thumb/" (e.id) "/original" };
                }
            }
            div.meta {
                a.name href={ "/p/" (e.id) } title=(e.input) { (base_name(&e.input)) }
                span.badge { (e.event) }
                div.sub {
                    (e.inbox) @if let Some(p) = &e.provider { " · " (p) }
                    " · " time datetime=(e.ts) { (e.ts.get(..19).unwrap_or(&e.ts).replace('T', " ")) }
                    " · " (size(e.bytes))
                }
                (why(e))
            }
        }
    }
}

/// Reason, hint and code of a rejection or failure.
fn why(e: &Entry) -> Markup {
    html! {
        @if e.code.is_some() || e.reason.is_some() {
            div.why {
                @if let Some(c) = &e.code { code.code { (c) } " " }
                @if let Some(r) = &e.reason { span.reason { (r) } }
                @if let Some(h) = &e.hint { div.hint { "hint: " (h) } }
            }
        }
    }
}

/// `/p/{id}`: one picture.
pub fn picture(t: &Top, e: &Entry, history: &[Entry]) -> Markup {
    let outs = files::outputs(e);
    let pretty = serde_json::from_str::<serde_json::Value>(&e.line)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| e.line.clone());
    let body = html! {
        (top(t))
        main.picture data-job=(e.job) data-outcome=(e.event) {
            p { a href="/" { "← all outcomes" } }
            h1 { (base_name(&e.input)) " " span.badge.{ "ev-" (e.event) } { (e.event) } }
            p.sub {
                (e.inbox) " / " (e.input)
                @if let Some(p) = &e.provider { " · " (p) }
                " · " (e.ts) " · " (size(e.bytes))
            }
            (why(e))
            @if !outs.is_empty() {
                h2 { "before / after" }
                div.compare id="compare" {
                    img.before src={ "/file/" (e.id) "/original" } alt="original";
                    div.after { img src={ "/file/" (e.id) "/out0" } alt="cut-out"; }
                    input.slider type="range" min="0" max="100" value="50" aria-label="before / after";
                }
            }
            @for (n, path) in outs.iter().enumerate() {
                figure.zoom {
                    img src={ "/file/" (e.id) "/out" (n) } alt={ "output " (n) };
                    figcaption { "output " (n) ": " (base_name(path)) " (click to zoom)" }
                }
            }
            figure.zoom {
                img src={ "/file/" (e.id) "/original" } alt="original";
                figcaption { "original (click to zoom)" }
            }
            h2 { "audit line" }
            pre.audit { (pretty) }
            h2 { "history" }
            table.history {
                tr { th { "time" } th { "event" } th { "provider" } th { "code" } th { "reason" } }
                @for h in history {
                    tr.current[h.id == e.id] {
                        td { a href={ "/p/" (h.id) } { (h.ts) } }
                        td { (h.event) }
                        td { (h.provider.as_deref().unwrap_or("")) }
                        td { (h.code.as_deref().unwrap_or("")) }
                        td { (h.reason.as_deref().unwrap_or("")) }
                    }
                }
            }
        }
    };
    layout(base_name(&e.input), body)
}

/// A plain error page.
pub fn message(title: &str, text: &str) -> Markup {
    layout(
        title,
        html! { main.picture { p { a href="/" { "← all outcomes" } } h1 { (title) } p { (text) } } },
    )
}

/// The cards of `entries`, newest first, as one HTML fragment.
pub fn cards(entries: &[Entry]) -> String {
    let mut s = String::new();
    for e in entries.iter().rev() {
        s.push_str(&card(e).into_string());
    }
    s
}
