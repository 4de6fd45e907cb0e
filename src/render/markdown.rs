//! `orch plan --format markdown`: a plan as a Markdown document for a pull request (or merge
//! request) comment, built from the same value as the human and JSON views: the summary
//! first (what a reviewer reads), then the steps as a table, each step's statements folded
//! away (`--show-sql`), the topology before and after as a `diff` block, and what is
//! blocked, lost or warned about.
//!
//! Text from the plan is escaped for GitHub-flavoured Markdown (a `|` would end a table
//! cell, a `<` start HTML); host names and codes are code spans. Takes a plan and a writer;
//! no other I/O.

use std::io::Write;

use super::{StepSql, TopologyView, plan_summary, short_fingerprint, topology_diff};
use crate::plan::Plan;

pub fn plan(plan: &Plan, sql: Option<&StepSql<'_>>, out: &mut dyn Write) -> std::io::Result<()> {
    // A marker a pipeline can find to update its earlier comment instead of adding one.
    writeln!(out, "<!-- orch plan: cluster {} -->", plan.cluster)?;
    writeln!(out, "### orch plan: cluster `{}`", plan.cluster)?;
    writeln!(out)?;
    let verdict = if plan.steps.is_empty() && plan.blocked.is_empty() {
        "no changes: the live topology matches the file"
    } else if plan.steps.is_empty() {
        "no steps: every change the file asks for is blocked"
    } else {
        ""
    };
    write!(out, "**{}**", plan_summary(plan))?;
    if !verdict.is_empty() {
        write!(out, " ({verdict})")?;
    }
    writeln!(out)?;
    writeln!(out)?;
    let files: Vec<String> = plan.files.iter().map(|f| code(&f.path)).collect();
    if files.is_empty() {
        writeln!(out, "Observed `{}`.", short_fingerprint(&plan.fingerprint))?;
    } else {
        writeln!(
            out,
            "From {}, against the topology observed as `{}`.",
            files.join(" and "),
            short_fingerprint(&plan.fingerprint)
        )?;
    }

    if !plan.steps.is_empty() {
        writeln!(out)?;
        writeln!(out, "| # | phase | host | action | why |")?;
        writeln!(out, "|--:|---|---|---|---|")?;
        for s in &plan.steps {
            writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                s.number,
                s.phase.name(),
                code(&s.host),
                text(&s.action.describe()),
                text(&s.why)
            )?;
        }
        if let Some(sql) = sql {
            writeln!(out)?;
            writeln!(out, "<details><summary>Statements</summary>")?;
            for s in &plan.steps {
                writeln!(out)?;
                writeln!(
                    out,
                    "Step {} on {} ({}):",
                    s.number,
                    code(&s.host),
                    code(&s.address.to_string())
                )?;
                writeln!(out)?;
                writeln!(out, "```sql")?;
                for stmt in sql(s) {
                    writeln!(out, "{stmt}")?;
                }
                writeln!(out, "```")?;
            }
            writeln!(out)?;
            writeln!(out, "</details>")?;
        }
    }

    writeln!(out)?;
    match topology_diff(plan) {
        TopologyView::Same(lines) => {
            writeln!(out, "Topology (unchanged):")?;
            writeln!(out)?;
            writeln!(out, "```")?;
            for line in &lines {
                writeln!(out, "{line}")?;
            }
        }
        TopologyView::Diff(lines) => {
            writeln!(out, "Topology (`-` before, `+` after):")?;
            writeln!(out)?;
            writeln!(out, "```diff")?;
            for (sign, line) in &lines {
                writeln!(out, "{sign} {line}")?;
            }
        }
    }
    writeln!(out, "```")?;

    if !plan.blocked.is_empty() {
        writeln!(out)?;
        writeln!(out, "**Blocked**")?;
        writeln!(out)?;
        writeln!(out, "| code | host | change | reason |")?;
        writeln!(out, "|---|---|---|---|")?;
        for b in &plan.blocked {
            writeln!(
                out,
                "| {} | {} | {} | {} |",
                code(b.code.name()),
                code(&b.host),
                text(&b.change),
                text(&b.reason)
            )?;
        }
    }
    if !plan.lost.is_empty() {
        writeln!(out)?;
        writeln!(out, "**Lost replicas**")?;
        writeln!(out)?;
        for l in &plan.lost {
            writeln!(out, "- {}: {}", code(&l.host), text(&l.reason))?;
        }
    }
    if !plan.warnings.is_empty() {
        writeln!(out)?;
        writeln!(out, "**Warnings**")?;
        writeln!(out)?;
        writeln!(out, "| code | host | message |")?;
        writeln!(out, "|---|---|---|")?;
        for w in &plan.warnings {
            writeln!(
                out,
                "| {} | {} | {} |",
                code(&w.code),
                code(&w.host),
                text(&w.message)
            )?;
        }
    }
    Ok(())
}

/// A code span. Host ids, codes and addresses hold no backtick; a `|` (which would end a
/// table cell even inside a span) is escaped.
fn code(s: &str) -> String {
    format!("`{}`", s.replace('`', "'").replace('|', "\\|"))
}

/// Prose for a table cell or a list item: Markdown's special characters backslash-escaped
/// (CommonMark allows it before any ASCII punctuation), line breaks as `<br>`.
fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '~' | '&' | '#' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("<br>"),
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_text_is_escaped() {
        assert_eq!(text("a | b"), "a \\| b");
        assert_eq!(text("KILL <ID>"), "KILL \\<ID\\>");
        assert_eq!(text("read_only=ON\nnext"), "read\\_only=ON<br>next");
        assert_eq!(
            text("plain words, (parens) and 1290."),
            "plain words, (parens) and 1290."
        );
        assert_eq!(code("db|1"), "`db\\|1`");
    }

    #[test]
    fn blocked_lost_and_warnings_are_listed() {
        use crate::plan::{BlockCode, Blocked, Lost, Placement, Warning};
        let placement = |host: &str, source: Option<&str>| Placement {
            host: host.into(),
            role: if source.is_none() {
                "primary"
            } else {
                "replica"
            }
            .into(),
            source: source.map(String::from),
            replication: if source.is_none() { "none" } else { "running" }.into(),
            read_only: Some(source.is_some()),
            reachable: true,
        };
        let before = vec![placement("a", None), placement("b", Some("a"))];
        let plan = Plan {
            schema: 1,
            cluster: "shop".into(),
            fingerprint: "sha256:0123456789abcdef".into(),
            files: Vec::new(),
            steps: Vec::new(),
            blocked: vec![Blocked {
                code: BlockCode::LostReplica,
                host: "b".into(),
                change: "move from a to c".into(),
                reason: "c passes nothing on | see <docs>".into(),
            }],
            lost: vec![Lost {
                host: "d".into(),
                reason: "its source a has log_slave_updates off".into(),
            }],
            warnings: vec![Warning {
                code: "failover-drift".into(),
                host: "a".into(),
                message: "a *was* the primary".into(),
            }],
            after: before.clone(),
            before,
        };
        let mut out = Vec::new();
        super::plan(&plan, None, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let want = [
            "<!-- orch plan: cluster shop -->",
            "### orch plan: cluster `shop`",
            "**0 steps on 0 hosts, 1 blocked, 1 lost, 1 warning** (no steps: every change the file asks for is blocked)",
            "Observed `sha256:0123456789ab`.",
            "Topology (unchanged):",
            "```\na primary rw\n└─ b ro\n```",
            "| `lost-replica` | `b` | move from a to c | c passes nothing on \\| see \\<docs\\> |",
            "**Lost replicas**\n\n- `d`: its source a has log\\_slave\\_updates off",
            "| `failover-drift` | `a` | a \\*was\\* the primary |",
        ];
        for w in want {
            assert!(text.contains(w), "want {w:?} in:\n{text}");
        }
        assert!(!text.contains("| # |"), "no steps, no steps table:\n{text}");
    }
}
