//! Glob patterns over object paths relative to a source's prefix (pure).
//!
//! `*` matches within one path segment, `**` any number of segments
//! (`**/` also none), `?` one character, `[abc]`/`[a-z]`/`[!a]` a class and
//! `{csv,tsv}` alternatives. Files whose path has a segment starting with
//! `.` or `_` (hidden, staging, `_SUCCESS`) never match.

use regex::Regex;

/// A compiled glob.
#[derive(Debug, Clone)]
pub struct Glob {
    pattern: String,
    regex: Regex,
}

impl Glob {
    /// Compiles `pattern`, or says why it is not a glob.
    pub fn new(pattern: &str) -> Result<Glob, String> {
        let mut re = String::from("^");
        let chars: Vec<char> = pattern.chars().collect();
        let mut i = 0;
        let mut in_alt = false;
        while i < chars.len() {
            let c = chars[i];
            match c {
                '*' if chars.get(i + 1) == Some(&'*') => {
                    if chars.get(i + 2) == Some(&'/') {
                        re.push_str("(?:[^/]*/)*");
                        i += 3;
                    } else {
                        re.push_str(".*");
                        i += 2;
                    }
                    continue;
                }
                '*' => re.push_str("[^/]*"),
                '?' => re.push_str("[^/]"),
                '[' => {
                    let end = chars[i + 1..]
                        .iter()
                        .position(|&c| c == ']')
                        .ok_or_else(|| format!("unclosed `[` in glob {pattern:?}"))?;
                    let class: String = chars[i + 1..i + 1 + end].iter().collect();
                    let class = match class.strip_prefix('!') {
                        Some(rest) => format!("^{rest}"),
                        None => class,
                    };
                    re.push('[');
                    re.push_str(&class.replace('\\', "\\\\"));
                    re.push(']');
                    i += end + 2;
                    continue;
                }
                '{' if !in_alt => {
                    in_alt = true;
                    re.push_str("(?:");
                }
                ',' if in_alt => re.push('|'),
                '}' if in_alt => {
                    in_alt = false;
                    re.push(')');
                }
                c => re.push_str(&regex::escape(&c.to_string())),
            }
            i += 1;
        }
        if in_alt {
            return Err(format!("unclosed `{{` in glob {pattern:?}"));
        }
        re.push('$');
        let regex = Regex::new(&re).map_err(|e| format!("bad glob {pattern:?}: {e}"))?;
        Ok(Glob { pattern: pattern.to_owned(), regex })
    }

    /// Whether `relative` (a path under the prefix, `/`-separated) matches.
    pub fn matches(&self, relative: &str) -> bool {
        !relative.split('/').any(|s| s.starts_with('.') || s.starts_with('_'))
            && self.regex.is_match(relative)
    }

    /// The pattern as given.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stars_questions_classes_and_alternatives() {
        let g = Glob::new("*.csv").unwrap();
        assert!(g.matches("a.csv") && !g.matches("d/a.csv") && !g.matches("a.csvx"));
        let g = Glob::new("**/*.csv").unwrap();
        assert!(g.matches("a.csv") && g.matches("d/e/a.csv") && !g.matches("a.json"));
        let g = Glob::new("**").unwrap();
        assert!(g.matches("x") && g.matches("d/x"));
        let g = Glob::new("day=2?/[a-c]*.{csv,tsv}").unwrap();
        assert!(g.matches("day=21/b1.tsv") && !g.matches("day=21/d1.csv"));
        let g = Glob::new("[!a]*").unwrap();
        assert!(g.matches("b") && !g.matches("a"));
    }

    #[test]
    fn hidden_and_staging_files_never_match() {
        let g = Glob::new("**").unwrap();
        assert!(!g.matches(".pending/part-0-0.jsonl"));
        assert!(!g.matches("_SUCCESS") && !g.matches("d/.x"));
    }

    #[test]
    fn unclosed_brackets_are_refused() {
        assert!(Glob::new("[ab").unwrap_err().contains("unclosed `[`"));
        assert!(Glob::new("{a,b").unwrap_err().contains("unclosed `{`"));
    }
}
