//! Key templates: `"profile:{id}"` split into literal text and placeholders.

use std::collections::BTreeSet;

/// One piece of a template.
pub enum Piece {
    Literal(String),
    Placeholder(String),
}

/// A parsed template and the characters of its literal text, which the
/// runtime escapes inside values so that no two argument lists render alike.
pub struct KeyTemplate {
    pub pieces: Vec<Piece>,
    pub reserved: String,
}

impl KeyTemplate {
    /// Splits `text`, a template of `of` (`"key"` or `"tag"`); the error
    /// explains the first problem found.
    pub fn parse(text: &str, of: &str) -> Result<KeyTemplate, String> {
        if text.is_empty() {
            return Err(if of == "key" {
                "the key template is empty; write e.g. \"profile:{id}\", or leave `key` out to key by every argument".to_owned()
            } else {
                format!("the {of} template is empty; write e.g. \"org:{{org_id}}\" or \"plans\"")
            });
        }
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            match c {
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) => name.push(c),
                            None => {
                                return Err(format!(
                                    "unterminated placeholder `{{{name}` in the {of} template; close it with `}}`"
                                ));
                            }
                        }
                    }
                    let name = name.trim().to_owned();
                    if name.is_empty() {
                        return Err(format!(
                            "empty placeholder `{{}}` in the {of} template; name an argument, e.g. `{{id}}`"
                        ));
                    }
                    if literal.is_empty() && matches!(pieces.last(), Some(Piece::Placeholder(_))) {
                        return Err(format!(
                            "placeholder `{{{name}}}` directly follows another; separate them, e.g. `{{a}}:{{b}}`, so that their values cannot run together"
                        ));
                    }
                    if !literal.is_empty() {
                        pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                    }
                    pieces.push(Piece::Placeholder(name));
                }
                '}' => return Err(format!("unmatched `}}` in the {of} template")),
                '%' => {
                    return Err(format!(
                        "`%` is reserved in {of} templates: the runtime uses it to escape values"
                    ));
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        let reserved: BTreeSet<char> = pieces
            .iter()
            .filter_map(|piece| match piece {
                Piece::Literal(text) => Some(text.chars()),
                Piece::Placeholder(_) => None,
            })
            .flatten()
            .collect();
        Ok(KeyTemplate {
            pieces,
            reserved: reserved.into_iter().collect(),
        })
    }

    pub fn placeholders(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|piece| match piece {
            Piece::Placeholder(name) => Some(name.as_str()),
            Piece::Literal(_) => None,
        })
    }
}
