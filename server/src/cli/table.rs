//! Plain-text tables with aligned columns for the CLI's `--output table`.

/// Renders a header row and rows as columns separated by two spaces (the last column is not padded).
pub fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let pad = widths[i] - cell.chars().count();
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', pad + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A cell for an optional value: the value, or `-`.
pub fn or_dash(value: Option<&str>) -> String {
    match value {
        Some(v) if !v.is_empty() => v.to_owned(),
        _ => "-".to_owned(),
    }
}

/// A cell for a list: comma-joined, or `-` when empty.
pub fn list<S: AsRef<str>>(values: &[S]) -> String {
    if values.is_empty() {
        "-".to_owned()
    } else {
        values
            .iter()
            .map(AsRef::as_ref)
            .collect::<Vec<_>>()
            .join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_columns() {
        let rows = vec![
            vec!["shop".to_owned(), "web-data".to_owned(), "Bound".to_owned()],
            vec!["a".to_owned(), "x".to_owned(), "Pending".to_owned()],
        ];
        assert_eq!(
            render(&["NAMESPACE", "NAME", "PHASE"], &rows),
            "NAMESPACE  NAME      PHASE\n\
             shop       web-data  Bound\n\
             a          x         Pending\n"
        );
    }

    #[test]
    fn empty_values_show_a_dash() {
        assert_eq!(or_dash(None), "-");
        assert_eq!(or_dash(Some("")), "-");
        assert_eq!(list::<&str>(&[]), "-");
        assert_eq!(list(&["a".to_owned(), "b".to_owned()]), "a,b");
    }
}
