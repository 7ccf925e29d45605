//! One explained text as a self-contained HTML page: the text with every token shaded by its
//! relevance (red relevant, white zero, blue irrelevant: the heatmap's colour map, see
//! [`crate::heatmap`], scaled by the text's largest |relevance|), the exact value on hover,
//! a legend, and the numbers of the explanation.

use super::Token;

/// What the page shows besides the tokens.
pub struct Summary<'a> {
    pub title: &'a str,
    pub model: &'a str,
    pub method: &'a str,
    /// `(class name, probability)` of the top classes.
    pub top: &'a [(String, f64)],
    pub explained: &'a str,
    pub logit: f32,
    pub relevance_sum: f64,
    /// Relevance that no text token holds: `(what, value)`, e.g. the start token, the padding.
    pub rest: &'a [(String, f64)],
    pub truncated: Option<(usize, usize)>,
}

/// The background and text colours of a token with relevance `v`, scaled by `scale`
/// (the largest |relevance|): the colour map's half from white to pure red or blue, so dark
/// text stays legible; white text on the strongest third.
pub fn token_colours(v: f32, scale: f32) -> ([u8; 3], &'static str) {
    let u = if scale > 0.0 { v / scale } else { 0.0 };
    let bg = crate::heatmap::colour(0.5 * u);
    let fg = if u.abs() > 0.67 { "#fff" } else { "#111" };
    (bg, fg)
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

fn hex(c: [u8; 3]) -> String {
    format!("#{:02x}{:02x}{:02x}", c[0], c[1], c[2])
}

/// The page for `tokens` (with `relevance[k]` the relevance of `tokens[k]`).
pub fn page(s: &Summary, text: &str, tokens: &[Token], relevance: &[f32]) -> String {
    let scale = relevance.iter().fold(0f32, |m, v| m.max(v.abs()));
    let chars: Vec<char> = text.chars().collect();
    let mut body = String::new();
    let mut at = 0;
    for (t, &r) in tokens.iter().zip(relevance) {
        // Text no token covers (spaces a tokenizer drops) is shown unshaded.
        if t.start > at && t.start <= chars.len() {
            body.push_str(&escape(&chars[at..t.start].iter().collect::<String>()));
        }
        at = at.max(t.end);
        let (bg, fg) = token_colours(r, scale);
        body.push_str(&format!(
            "<span class=\"t\" style=\"background:{};color:{fg}\" title=\"token {} (id {}): {:+.4}\">{}</span>",
            hex(bg),
            escape(&format!("{:?}", t.text)),
            t.id,
            r,
            escape(&t.text)
        ));
    }
    let top: Vec<String> = s
        .top
        .iter()
        .map(|(c, p)| format!("{} {:.1}%", escape(c), 100.0 * p))
        .collect();
    let rest: Vec<String> = s
        .rest
        .iter()
        .map(|(w, v)| format!("{} {:+.4}", escape(w), v))
        .collect();
    let legend: String = (0..=20)
        .map(|i| {
            let v = -1.0 + i as f32 / 10.0;
            let (bg, _) = token_colours(v, 1.0);
            format!(
                "<span class=\"sw\" style=\"background:{}\"></span>",
                hex(bg)
            )
        })
        .collect();
    let warning = s
        .truncated
        .map(|(kept, total)| {
            format!(
                "<p class=\"warn\">The text has {total} tokens; the model reads the first \
                 {kept}, and only they are shown.</p>"
            )
        })
        .unwrap_or_default();
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 52rem; margin: 2rem auto; padding: 0 1rem; color: #111; }}
.text {{ font-family: ui-monospace, monospace; font-size: 1.05rem; line-height: 2; white-space: pre-wrap; border: 1px solid #ddd; padding: 0.8rem; }}
.t {{ border-radius: 2px; }}
.sw {{ display: inline-block; width: 1.2rem; height: 0.9rem; }}
.legend {{ display: flex; align-items: center; gap: 0.5rem; font-size: 0.9rem; margin: 0.8rem 0; }}
table {{ border-collapse: collapse; font-size: 0.95rem; }} td {{ padding: 0.15rem 0.8rem 0.15rem 0; }}
.warn {{ color: #a40; }}
</style></head><body>
<h1>{title}</h1>
<table>
<tr><td>model</td><td>{model}</td></tr>
<tr><td>method</td><td>{method}</td></tr>
<tr><td>classes</td><td>{top}</td></tr>
<tr><td>explained</td><td><b>{explained}</b>, logit {logit:.4}</td></tr>
<tr><td>relevance sum</td><td>{sum:.4} (text tokens {tokens_sum:+.4}{rest})</td></tr>
</table>
{warning}
<div class="legend"><span>{neg:+.3} irrelevant</span><span>{legend}</span><span>relevant {pos:+.3}</span></div>
<div class="text">{body}</div>
<p style="font-size:0.85rem;color:#555">Each token is shaded by its relevance for the explained class, divided by the text's largest |relevance|; hover a token for its value. The values sum to the logit with the special tokens and the padding.</p>
</body></html>
"#,
        title = escape(s.title),
        model = escape(s.model),
        method = escape(s.method),
        top = top.join(", "),
        explained = escape(s.explained),
        logit = s.logit,
        sum = s.relevance_sum,
        tokens_sum = relevance.iter().map(|&v| v as f64).sum::<f64>(),
        rest = if rest.is_empty() {
            String::new()
        } else {
            format!(", {}", rest.join(", "))
        },
        neg = -scale,
        pos = scale,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_escaped_and_shaded() {
        let toks = vec![
            Token {
                id: 1,
                start: 0,
                end: 3,
                text: "<b>".into(),
            },
            Token {
                id: 2,
                start: 3,
                end: 5,
                text: " x".into(),
            },
        ];
        let s = Summary {
            title: "t",
            model: "m",
            method: "rap",
            top: &[("a".into(), 0.9)],
            explained: "a",
            logit: 1.0,
            relevance_sum: 1.0,
            rest: &[],
            truncated: None,
        };
        let p = page(&s, "<b> x", &toks, &[2.0, -1.0]);
        assert!(p.contains("&lt;b&gt;</span>") && !p.contains("<b></span>"));
        // The largest value takes the colour map's red end of the half used (colour(0.5)),
        // half of it in blue the middle of the blue half.
        let red = crate::heatmap::colour(0.5);
        let red = format!(
            "background:#{:02x}{:02x}{:02x};color:#fff",
            red[0], red[1], red[2]
        );
        assert!(p.contains(&red), "{p}");
        assert_eq!(token_colours(-1.0, 2.0).0, crate::heatmap::colour(-0.25));
    }
}
