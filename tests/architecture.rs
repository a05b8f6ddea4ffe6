//! The layering holds: no module of `src/` imports a module of a higher layer, and no
//! two modules of one layer import each other (a cycle).
//!
//! The table of layers is in one place, `docs/architecture.md` (the fenced block
//! tagged `layers`, top layer first, one layer per line, modules separated by spaces);
//! this test reads it from there, so the picture and the check cannot drift apart.
//! Every top-level module of `src/` must appear in it.
//!
//! What counts as an import: every `crate::m` path in code (a `use` line, a nested
//! `use crate::{a, b::c}` group, or a path written inline), and a `super::` chain that
//! climbs to the crate root. Comments and string literals are skipped; so is test-only
//! code (a `#[cfg(test)]` module, in its own file or inline): a test may drive its
//! module from above, the shipped program may not.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The layers, top first, from `docs/architecture.md`.
fn layer_table() -> Vec<Vec<String>> {
    let doc = std::fs::read_to_string(Path::new(ROOT).join("docs/architecture.md"))
        .expect("docs/architecture.md is readable");
    let mut rows = Vec::new();
    let mut inside = false;
    for line in doc.lines() {
        let t = line.trim();
        if !inside && t == "```layers" {
            inside = true;
        } else if inside && t.starts_with("```") {
            break;
        } else if inside && !t.is_empty() {
            rows.push(t.split_whitespace().map(str::to_string).collect());
        }
    }
    assert!(
        !rows.is_empty(),
        "docs/architecture.md has no ```layers block"
    );
    rows
}

/// Rust source with comments, string and char literals blanked (newlines kept, so
/// line numbers stay true).
fn code_only(src: &str) -> String {
    let b: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(b[i]));
                    i += 1;
                }
            }
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && !ident_char_before(&b, i)
        {
            // Raw string r"…" / r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= b.len() {
                    break;
                }
                if b[j] == '"' && (0..hashes).all(|k| b.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            for &ch in &b[i..j.min(b.len())] {
                out.push(blank(ch));
            }
            i = j;
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < b.len() && b[i] != '"' {
                if b[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < b.len() {
                    out.push(blank(b[i]));
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a).
            let close = if next == Some('\\') {
                (i + 2..b.len().min(i + 12)).find(|&k| b[k] == '\'')
            } else if b.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match close {
                Some(k) => {
                    for _ in i..=k {
                        out.push(' ');
                    }
                    i = k + 1;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn ident_char_before(b: &[char], i: usize) -> bool {
    i > 0 && (b[i - 1].is_alphanumeric() || b[i - 1] == '_')
}

/// Blanks every `#[cfg(test)]` item with a body (`mod tests { … }`), and returns the
/// names of `#[cfg(test)] mod name;` declarations (test-only files).
fn drop_test_code(code: &str) -> (String, Vec<String>) {
    let mut b: Vec<char> = code.chars().collect();
    let mut test_files = Vec::new();
    let pat: Vec<char> = "#[cfg(test)]".chars().collect();
    let mut i = 0;
    while i + pat.len() <= b.len() {
        if b[i..i + pat.len()] != pat[..] {
            i += 1;
            continue;
        }
        // The item after the attribute: up to its `;` or its balanced `{ … }`.
        let mut j = i + pat.len();
        while j < b.len() && b[j] != '{' && b[j] != ';' {
            j += 1;
        }
        if j < b.len() && b[j] == ';' {
            let item: String = b[i + pat.len()..j].iter().collect();
            let words: Vec<&str> = item.split_whitespace().collect();
            if let Some(p) = words.iter().position(|w| *w == "mod") {
                if let Some(name) = words.get(p + 1) {
                    test_files.push(name.to_string());
                }
            }
            i = j;
            continue;
        }
        let mut depth = 0;
        let mut k = j;
        while k < b.len() {
            match b[k] {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                _ => {}
            }
            k += 1;
        }
        let end = k.min(b.len() - 1) + 1;
        for ch in &mut b[i..end] {
            if *ch != '\n' {
                *ch = ' ';
            }
        }
        i = k + 1;
    }
    (b.into_iter().collect(), test_files)
}

/// One import of a top-level module: (line, module).
fn imports(code: &str, module_depth: usize) -> Vec<(usize, String)> {
    let b: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let line_of = |pos: usize| b[..pos].iter().filter(|&&c| c == '\n').count() + 1;
    let ident_at = |mut k: usize| {
        let mut s = String::new();
        while k < b.len() && (b[k].is_alphanumeric() || b[k] == '_') {
            s.push(b[k]);
            k += 1;
        }
        s
    };
    let skip_ws = |mut k: usize| {
        while k < b.len() && b[k].is_whitespace() {
            k += 1;
        }
        k
    };
    let mut i = 0;
    while i < b.len() {
        if ident_char_before(&b, i) {
            i += 1;
            continue;
        }
        let word = ident_at(i);
        // `super::super::…` climbing to the crate root counts like `crate::`.
        let mut k = i;
        let mut start_of_path = None;
        if word == "crate" {
            start_of_path = Some(i + 5);
        } else if word == "super" {
            let mut ups = 0;
            while ident_at(k) == "super" && b.get(k + 5) == Some(&':') && b.get(k + 6) == Some(&':')
            {
                ups += 1;
                k += 7;
            }
            if ups > module_depth {
                panic!("super:: chain climbs past the crate root");
            }
            if ups == module_depth && ups > 0 {
                start_of_path = Some(k - 2);
            }
        }
        let Some(p) = start_of_path else {
            i += word.len().max(1);
            continue;
        };
        let p = skip_ws(p);
        if b.get(p) != Some(&':') || b.get(p + 1) != Some(&':') {
            i = p.max(i + 1);
            continue;
        }
        let p = skip_ws(p + 2);
        if b.get(p) == Some(&'{') {
            // A group: the first segment of every path at depth 1.
            let mut depth = 0;
            let mut q = p;
            let mut expect = true;
            while q < b.len() {
                match b[q] {
                    '{' => {
                        depth += 1;
                        if depth == 1 {
                            expect = true;
                        }
                    }
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    ',' if depth == 1 => expect = true,
                    c if expect && depth == 1 && (c.is_alphabetic() || c == '_') => {
                        let m = ident_at(q);
                        if m != "self" {
                            out.push((line_of(q), m.clone()));
                        }
                        expect = false;
                        q += m.len();
                        continue;
                    }
                    _ => {}
                }
                q += 1;
            }
            i = q + 1;
        } else {
            let m = ident_at(p);
            if !m.is_empty() {
                out.push((line_of(p), m.clone()));
            }
            i = p + m.len().max(1);
        }
    }
    out
}

struct Source {
    file: PathBuf,
    /// The top-level module the file belongs to.
    module: String,
    /// How many `super::` reach the crate root from this file's module.
    depth: usize,
}

fn sources() -> Vec<Source> {
    let src = Path::new(ROOT).join("src");
    let mut out = Vec::new();
    let mut test_only: BTreeSet<PathBuf> = BTreeSet::new();
    let mut stack = vec![src.clone()];
    let mut files = Vec::new();
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("src/ is readable").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    // Files declared `#[cfg(test)] mod x;` are test-only.
    for f in &files {
        let text = std::fs::read_to_string(f).expect("source is readable");
        let (_, tests) = drop_test_code(&code_only(&text));
        let stem = f.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        let dir = if matches!(stem, "mod" | "lib" | "main") {
            f.parent().map(Path::to_path_buf)
        } else {
            f.parent().map(|p| p.join(stem))
        };
        if let Some(dir) = dir {
            for t in tests {
                test_only.insert(dir.join(format!("{t}.rs")));
                test_only.insert(dir.join(&t).join("mod.rs"));
            }
        }
    }
    for file in files {
        if test_only.contains(&file) {
            continue;
        }
        let rel = file.strip_prefix(&src).expect("under src/").to_path_buf();
        let parts: Vec<String> = rel
            .iter()
            .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
            .collect();
        let module = parts[0].clone();
        if module == "lib" || module == "bin" {
            continue;
        }
        // src/m.rs, src/m/mod.rs: depth 1; src/m/x.rs: depth 2; …
        let depth = parts.len() - usize::from(parts.last().is_some_and(|p| p == "mod"));
        out.push(Source {
            file,
            module,
            depth,
        });
    }
    out
}

#[test]
fn no_module_imports_a_layer_above_it_or_a_sibling_that_imports_it_back() {
    let table = layer_table();
    let mut layer_of: BTreeMap<String, usize> = BTreeMap::new();
    for (n, row) in table.iter().enumerate() {
        for m in row {
            assert!(
                layer_of.insert(m.clone(), n).is_none(),
                "module {m} is twice in the layer table"
            );
        }
    }
    let sources = sources();
    let mut faults = Vec::new();
    // module → imported module → first place it happens.
    let mut edges: BTreeMap<(String, String), String> = BTreeMap::new();
    for s in &sources {
        let Some(&own) = layer_of.get(&s.module) else {
            faults.push(format!(
                "{}: module {} is not in the layer table (docs/architecture.md, ```layers)",
                s.file.display(),
                s.module
            ));
            continue;
        };
        let text = std::fs::read_to_string(&s.file).expect("source is readable");
        let (code, _) = drop_test_code(&code_only(&text));
        for (line, target) in imports(&code, s.depth) {
            if target == s.module {
                continue;
            }
            let place = format!(
                "{}:{line}",
                s.file.strip_prefix(ROOT).unwrap_or(&s.file).display()
            );
            match layer_of.get(&target) {
                // A lower row is smaller in "height": rows are listed top first.
                Some(&theirs) if theirs < own => faults.push(format!(
                    "{place}: {} (layer {}) imports {target}, a higher layer ({})",
                    s.module,
                    table[own].join(" · "),
                    table[theirs].join(" · ")
                )),
                Some(_) => {
                    edges.entry((s.module.clone(), target)).or_insert(place);
                }
                None => {}
            }
        }
    }
    for ((a, b), place) in &edges {
        if a < b && layer_of[a] == layer_of[b] {
            if let Some(back) = edges.get(&(b.clone(), a.clone())) {
                faults.push(format!(
                    "{place}: {a} imports {b} and {back}: {b} imports {a} (a cycle in one layer)"
                ));
            }
        }
    }
    assert!(
        faults.is_empty(),
        "{} upward import(s):\n{}",
        faults.len(),
        faults.join("\n")
    );
}

#[test]
fn the_import_reader_sees_groups_inline_paths_and_super_chains_but_not_comments() {
    let code = code_only(
        "use crate::{a, b::{c, d}, self};\n// crate::hidden\nfn f() { crate::e::g(); let s = \"crate::str\"; }\nuse super::super::h;\n",
    );
    let found: Vec<(usize, String)> = imports(&code, 2);
    let names: Vec<&str> = found.iter().map(|(_, m)| m.as_str()).collect();
    assert_eq!(names, ["a", "b", "e", "h"]);
    assert_eq!(found[2].0, 3);
    let (code, files) = drop_test_code(&code_only(
        "#[cfg(test)]\nmod tests;\n#[cfg(test)]\nmod inline { use crate::z; }\nuse crate::y;\n",
    ));
    assert_eq!(files, ["tests"]);
    let names: Vec<String> = imports(&code, 1).into_iter().map(|(_, m)| m).collect();
    assert_eq!(names, ["y"]);
}
