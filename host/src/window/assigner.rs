//! Window assigners: which windows a timestamp belongs to (Flink's
//! `TumblingEventTimeWindows`, `SlidingEventTimeWindows`,
//! `EventTimeSessionWindows`). Windows are aligned to the epoch (plus an
//! offset) and their end is exclusive.

/// A time window `[start, end)`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Window {
    /// First millisecond in the window.
    pub start: i64,
    /// First millisecond after the window.
    pub end: i64,
}

impl Window {
    /// The largest timestamp inside the window (`end - 1`): the window
    /// fires when the watermark reaches it.
    pub fn max_timestamp(&self) -> i64 {
        self.end - 1
    }

    /// Whether two windows overlap or touch (session windows merge then).
    pub fn intersects(&self, other: &Window) -> bool {
        self.start <= other.end && other.start <= self.end
    }

    /// The smallest window that covers both.
    pub fn cover(&self, other: &Window) -> Window {
        Window { start: self.start.min(other.start), end: self.end.max(other.end) }
    }
}

/// How records are grouped into windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum WindowAssigner {
    /// Fixed-size, non-overlapping windows.
    Tumbling {
        /// Window length, ms.
        size: i64,
        /// Shift of the window starts from the epoch, ms.
        offset: i64,
    },
    /// Fixed-size windows starting every `slide` ms.
    Sliding {
        /// Window length, ms.
        size: i64,
        /// Distance between window starts, ms.
        slide: i64,
        /// Shift of the window starts from the epoch, ms.
        offset: i64,
    },
    /// Windows that close after `gap` ms without records for a key.
    Session {
        /// The inactivity gap, ms.
        gap: i64,
    },
}

/// Why a window definition is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    /// A size, slide or gap of zero or less.
    #[error("window {what} must be positive, got {value} ms")]
    NotPositive {
        /// Which parameter.
        what: &'static str,
        /// Its value.
        value: i64,
    },
    /// A slide larger than the window: records between windows would be lost.
    #[error("window slide {slide} ms is larger than its size {size} ms")]
    SlideLargerThanSize {
        /// The size.
        size: i64,
        /// The slide.
        slide: i64,
    },
    /// An offset not smaller than the size (or slide).
    #[error("window offset {offset} ms must be smaller than {limit} ms in magnitude")]
    Offset {
        /// The offset.
        offset: i64,
        /// The size or slide it must stay below.
        limit: i64,
    },
}

/// Flink's `TimeWindow.getWindowStartWithOffset`.
fn window_start(timestamp: i64, offset: i64, size: i64) -> i64 {
    let remainder = (timestamp - offset + size).rem_euclid(size);
    timestamp - remainder
}

impl WindowAssigner {
    /// Checks the parameters.
    pub fn validate(&self) -> Result<(), WindowError> {
        let positive = |what, value: i64| {
            if value > 0 { Ok(()) } else { Err(WindowError::NotPositive { what, value }) }
        };
        let offset_ok = |offset: i64, limit: i64| {
            if offset.abs() < limit { Ok(()) } else { Err(WindowError::Offset { offset, limit }) }
        };
        match *self {
            WindowAssigner::Tumbling { size, offset } => {
                positive("size", size)?;
                offset_ok(offset, size)
            }
            WindowAssigner::Sliding { size, slide, offset } => {
                positive("size", size)?;
                positive("slide", slide)?;
                if slide > size {
                    return Err(WindowError::SlideLargerThanSize { size, slide });
                }
                offset_ok(offset, slide)
            }
            WindowAssigner::Session { gap } => positive("gap", gap),
        }
    }

    /// Whether windows of this assigner merge (session windows).
    pub fn is_merging(&self) -> bool {
        matches!(self, WindowAssigner::Session { .. })
    }

    /// For sliding windows whose size is a multiple of their slide (and
    /// more than one slide): `(size, slide)`. Such windows are unions of
    /// panes, tumbling windows of one slide, so an aggregate can be kept per
    /// pane and combined when a window fires.
    pub fn panes(&self) -> Option<(i64, i64)> {
        match *self {
            WindowAssigner::Sliding { size, slide, .. } if size > slide && size % slide == 0 => {
                Some((size, slide))
            }
            _ => None,
        }
    }

    /// The pane (see [`WindowAssigner::panes`]) `timestamp` falls in.
    pub fn pane(&self, timestamp: i64) -> Option<Window> {
        let (_, slide) = self.panes()?;
        let WindowAssigner::Sliding { offset, .. } = *self else { return None };
        let start = window_start(timestamp, offset, slide);
        Some(Window { start, end: start + slide })
    }

    /// The windows a record with `timestamp` belongs to, in start order.
    pub fn assign(&self, timestamp: i64, out: &mut Vec<Window>) {
        out.clear();
        match *self {
            WindowAssigner::Tumbling { size, offset } => {
                let start = window_start(timestamp, offset, size);
                out.push(Window { start, end: start + size });
            }
            WindowAssigner::Sliding { size, slide, offset } => {
                let last = window_start(timestamp, offset, slide);
                let mut start = last;
                while start > timestamp - size {
                    out.push(Window { start, end: start + size });
                    start -= slide;
                }
                out.reverse();
            }
            WindowAssigner::Session { gap } => {
                out.push(Window { start: timestamp, end: timestamp + gap });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assign(a: WindowAssigner, ts: i64) -> Vec<(i64, i64)> {
        let mut v = Vec::new();
        a.assign(ts, &mut v);
        v.into_iter().map(|w| (w.start, w.end)).collect()
    }

    #[test]
    fn tumbling_windows_align_to_the_epoch_and_exclude_their_end() {
        let t = WindowAssigner::Tumbling { size: 1000, offset: 0 };
        assert_eq!(assign(t, 0), vec![(0, 1000)]);
        assert_eq!(assign(t, 999), vec![(0, 1000)]);
        assert_eq!(assign(t, 1000), vec![(1000, 2000)]);
        assert_eq!(assign(t, -1), vec![(-1000, 0)]);
        let shifted = WindowAssigner::Tumbling { size: 1000, offset: 100 };
        assert_eq!(assign(shifted, 50), vec![(-900, 100)]);
        assert_eq!(assign(shifted, 100), vec![(100, 1100)]);
    }

    #[test]
    fn sliding_windows_cover_size_over_slide_windows() {
        let s = WindowAssigner::Sliding { size: 10_000, slide: 2_000, offset: 0 };
        assert_eq!(
            assign(s, 10_500),
            vec![(2000, 12000), (4000, 14000), (6000, 16000), (8000, 18000), (10000, 20000)]
        );
        let s = WindowAssigner::Sliding { size: 3, slide: 2, offset: 0 };
        assert_eq!(assign(s, 2), vec![(0, 3), (2, 5)]);
        assert_eq!(assign(s, 3), vec![(2, 5)]);
    }

    #[test]
    fn bad_windows_are_refused() {
        assert!(WindowAssigner::Tumbling { size: 0, offset: 0 }.validate().is_err());
        assert_eq!(
            WindowAssigner::Sliding { size: 10, slide: 20, offset: 0 }.validate(),
            Err(WindowError::SlideLargerThanSize { size: 10, slide: 20 })
        );
        assert!(WindowAssigner::Session { gap: -5 }.validate().is_err());
        assert!(WindowAssigner::Tumbling { size: 10, offset: 10 }.validate().is_err());
        WindowAssigner::Sliding { size: 10, slide: 10, offset: 3 }.validate().unwrap();
    }

    #[test]
    fn windows_intersect_and_cover() {
        let a = Window { start: 0, end: 10 };
        let b = Window { start: 10, end: 15 };
        assert!(a.intersects(&b));
        assert!(!a.intersects(&Window { start: 11, end: 12 }));
        assert_eq!(a.cover(&b), Window { start: 0, end: 15 });
    }
}
