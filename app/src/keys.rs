//! The inventory table's keyboard shortcuts as pure decisions: which shortcut a key press means
//! (given the element it was aimed at and its modifiers) and where the current row moves. The
//! browser glue (listening, focusing, scrolling) is in `pages::inventory::keyboard`.

/// What kind of element a key press was aimed at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyTarget {
    /// A text field, text area, select, radio button, slider… or editable content: every key
    /// belongs to it (typing, moving a caret, changing a value), so no shortcut fires.
    Editing,
    /// A button, link, checkbox or `<summary>`: Space and Enter activate it natively, other
    /// shortcuts still work.
    Control,
    /// Anything else: a table row, the page itself.
    Page,
}

impl KeyTarget {
    /// Classifies an element by its tag name (any case), its `type` attribute (for `<input>`; a
    /// missing one means text) and whether it is editable content (`contenteditable`).
    #[must_use]
    pub fn of(tag: &str, input_type: Option<&str>, editable: bool) -> Self {
        if editable {
            return Self::Editing;
        }
        match tag.to_ascii_lowercase().as_str() {
            "input" => match input_type.map(str::to_ascii_lowercase).as_deref() {
                Some("checkbox" | "button" | "submit" | "reset" | "image") => Self::Control,
                _ => Self::Editing,
            },
            "textarea" | "select" => Self::Editing,
            "button" | "a" | "summary" => Self::Control,
            _ => Self::Page,
        }
    }
}

/// A move of the current row through the displayed rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Next,
    Previous,
    First,
    Last,
}

/// What a key press asks the inventory table to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shortcut {
    /// `/`: focus the filter box.
    FocusFilter,
    /// Arrow Up/Down, Home, End: move the current row.
    Move(Step),
    /// Space: select or unselect the current row.
    ToggleSelection,
    /// `b`: back up the selection, as the "Back up selected" button does.
    BackUp,
}

/// The shortcut that the key `key` (the DOM's `KeyboardEvent.key`) means when pressed on `target`;
/// `modified` is true when Ctrl, Alt or Meta was held (Shift is not a modifier here: some layouts
/// need it to type `/`). `None`: the key is left to the browser.
#[must_use]
pub fn shortcut(key: &str, modified: bool, target: KeyTarget) -> Option<Shortcut> {
    if modified || target == KeyTarget::Editing {
        return None;
    }
    match key {
        "/" => Some(Shortcut::FocusFilter),
        "ArrowDown" => Some(Shortcut::Move(Step::Next)),
        "ArrowUp" => Some(Shortcut::Move(Step::Previous)),
        "Home" => Some(Shortcut::Move(Step::First)),
        "End" => Some(Shortcut::Move(Step::Last)),
        // Space activates a focused button or checkbox by itself.
        " " if target == KeyTarget::Page => Some(Shortcut::ToggleSelection),
        "b" => Some(Shortcut::BackUp),
        _ => None,
    }
}

/// The index of the row that becomes current after `step`, among `len` displayed rows, when the
/// current row is at `current` (`None`: no current row, or it is not displayed any more — then
/// every step but `Last` starts at the first row). Moves stop at the ends. `None` when no row is
/// displayed.
#[must_use]
pub fn step(len: usize, current: Option<usize>, step: Step) -> Option<usize> {
    let last = len.checked_sub(1)?;
    let current = current.filter(|&i| i <= last);
    Some(match (step, current) {
        (Step::First, _) | (Step::Next | Step::Previous, None) => 0,
        (Step::Last, _) => last,
        (Step::Next, Some(i)) => (i + 1).min(last),
        (Step::Previous, Some(i)) => i.saturating_sub(1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_stop_at_the_ends() {
        assert_eq!(step(3, Some(0), Step::Next), Some(1));
        assert_eq!(step(3, Some(1), Step::Next), Some(2));
        assert_eq!(step(3, Some(2), Step::Next), Some(2));
        assert_eq!(step(3, Some(2), Step::Previous), Some(1));
        assert_eq!(step(3, Some(0), Step::Previous), Some(0));
        assert_eq!(step(3, Some(1), Step::First), Some(0));
        assert_eq!(step(3, Some(1), Step::Last), Some(2));
        assert_eq!(step(1, Some(0), Step::Next), Some(0));
    }

    #[test]
    fn without_a_current_row_moves_start_at_the_first_row_and_end_at_the_last() {
        for s in [Step::Next, Step::Previous, Step::First] {
            assert_eq!(step(4, None, s), Some(0), "{s:?}");
        }
        assert_eq!(step(4, None, Step::Last), Some(3));
        // A current row past the displayed ones (the list shrank) counts as none.
        assert_eq!(step(2, Some(5), Step::Next), Some(0));
        assert_eq!(step(2, Some(5), Step::Last), Some(1));
    }

    #[test]
    fn nothing_to_move_to_without_rows() {
        for s in [Step::Next, Step::Previous, Step::First, Step::Last] {
            assert_eq!(step(0, None, s), None);
            assert_eq!(step(0, Some(0), s), None);
        }
    }

    #[test]
    fn keys_map_to_shortcuts_on_the_page() {
        let on_page = |key| shortcut(key, false, KeyTarget::Page);
        assert_eq!(on_page("/"), Some(Shortcut::FocusFilter));
        assert_eq!(on_page("ArrowDown"), Some(Shortcut::Move(Step::Next)));
        assert_eq!(on_page("ArrowUp"), Some(Shortcut::Move(Step::Previous)));
        assert_eq!(on_page("Home"), Some(Shortcut::Move(Step::First)));
        assert_eq!(on_page("End"), Some(Shortcut::Move(Step::Last)));
        assert_eq!(on_page(" "), Some(Shortcut::ToggleSelection));
        assert_eq!(on_page("b"), Some(Shortcut::BackUp));
        for other in ["B", "a", "Enter", "Escape", "ArrowLeft", "Tab", "PageDown"] {
            assert_eq!(on_page(other), None, "{other}");
        }
    }

    #[test]
    fn no_shortcut_while_typing_or_with_ctrl_alt_meta() {
        for key in ["/", "ArrowDown", "ArrowUp", "Home", "End", " ", "b"] {
            assert_eq!(shortcut(key, false, KeyTarget::Editing), None, "{key}");
            for target in [KeyTarget::Page, KeyTarget::Control] {
                assert_eq!(shortcut(key, true, target), None, "{key} {target:?}");
            }
        }
    }

    #[test]
    fn on_a_button_or_checkbox_space_stays_native_and_the_rest_works() {
        let on_control = |key| shortcut(key, false, KeyTarget::Control);
        assert_eq!(on_control(" "), None);
        assert_eq!(on_control("b"), Some(Shortcut::BackUp));
        assert_eq!(on_control("/"), Some(Shortcut::FocusFilter));
        assert_eq!(on_control("ArrowDown"), Some(Shortcut::Move(Step::Next)));
    }

    #[test]
    fn elements_are_classified_by_tag_and_input_type() {
        assert_eq!(KeyTarget::of("INPUT", None, false), KeyTarget::Editing);
        for kind in [
            "text", "search", "number", "radio", "range", "password", "date",
        ] {
            assert_eq!(
                KeyTarget::of("input", Some(kind), false),
                KeyTarget::Editing,
                "{kind}"
            );
        }
        for kind in ["checkbox", "CHECKBOX", "button", "submit", "reset", "image"] {
            assert_eq!(
                KeyTarget::of("INPUT", Some(kind), false),
                KeyTarget::Control,
                "{kind}"
            );
        }
        assert_eq!(KeyTarget::of("TEXTAREA", None, false), KeyTarget::Editing);
        assert_eq!(KeyTarget::of("SELECT", None, false), KeyTarget::Editing);
        for tag in ["BUTTON", "A", "SUMMARY"] {
            assert_eq!(KeyTarget::of(tag, None, false), KeyTarget::Control, "{tag}");
        }
        for tag in ["TR", "BODY", "TD", "DIV"] {
            assert_eq!(KeyTarget::of(tag, None, false), KeyTarget::Page, "{tag}");
        }
        assert_eq!(KeyTarget::of("DIV", None, true), KeyTarget::Editing);
    }
}
