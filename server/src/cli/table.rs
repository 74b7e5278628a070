//! Plain-text tables with aligned columns for the CLI's `--output table` and `--output wide`: the
//! narrow table shows what fits a terminal, the wide one every column.

/// One column of a table: its header, and whether only the wide table shows it.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub header: &'static str,
    pub wide_only: bool,
}

/// A column of both tables.
pub const fn col(header: &'static str) -> Column {
    Column {
        header,
        wide_only: false,
    }
}

/// A column of the wide table only.
pub const fn wide(header: &'static str) -> Column {
    Column {
        header,
        wide_only: true,
    }
}

/// How a table is printed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Layout {
    /// Every column (`--output wide`).
    pub wide: bool,
    /// No header line (`--no-headers`).
    pub no_headers: bool,
}

/// Renders the columns the layout shows; every row has one cell per column.
pub fn render_columns(columns: &[Column], rows: &[Vec<String>], layout: Layout) -> String {
    let keep: Vec<usize> = (0..columns.len())
        .filter(|&i| layout.wide || !columns[i].wide_only)
        .collect();
    let headers: Vec<&str> = keep.iter().map(|&i| columns[i].header).collect();
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| keep.iter().map(|&i| row[i].clone()).collect())
        .collect();
    let text = render(&headers, &rows);
    if layout.no_headers {
        text.split_once('\n')
            .map_or_else(String::new, |(_, rest)| rest.to_owned())
    } else {
        text
    }
}

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

/// A list cell that stays short: the items when at most `max`, else the first ones and `+N`.
pub fn short_list<S: AsRef<str>>(values: &[S], max: usize) -> String {
    if values.len() <= max {
        return list(values);
    }
    format!("{},+{}", list(&values[..max]), values.len() - max)
}

/// A cell cut to at most `max` characters on one line, ending in `…` when cut.
pub fn shorten(text: &str, max: usize) -> String {
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() <= max {
        return line;
    }
    let mut cut: String = line.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
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
        assert_eq!(short_list(&["a", "b", "c"], 2), "a,b,+1");
        assert_eq!(short_list(&["a", "b"], 2), "a,b");
        assert_eq!(shorten("a  b\nc", 80), "a b c");
        assert_eq!(shorten("abcdef", 4), "abc…");
    }

    #[test]
    fn narrow_tables_drop_wide_columns_and_headers_on_request() {
        let columns = [col("A"), wide("B"), col("C")];
        let rows = vec![vec!["1".to_owned(), "2".to_owned(), "3".to_owned()]];
        assert_eq!(
            render_columns(&columns, &rows, Layout::default()),
            "A  C\n1  3\n"
        );
        let wide_layout = Layout {
            wide: true,
            no_headers: true,
        };
        assert_eq!(render_columns(&columns, &rows, wide_layout), "1  2  3\n");
    }
}
