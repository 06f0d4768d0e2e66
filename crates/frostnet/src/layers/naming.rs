//! Default layer and model names, made as Keras 3 makes them: a per-class counter per session
//! (`dense`, `dense_1`, ...). Sessions are per thread, so tests running in parallel do not disturb
//! each other's names; [`clear_session`] resets the counters as `keras.backend.clear_session()` does.

use std::cell::RefCell;
use std::collections::HashMap;

thread_local! {
    static COUNTERS: RefCell<HashMap<String, usize>> = RefCell::new(HashMap::new());
}

/// The next unused name for a class's base name (`"dense"` -> `"dense"`, then `"dense_1"`, ...).
pub fn unique_name(base: &str) -> String {
    COUNTERS.with(|c| {
        let mut c = c.borrow_mut();
        let n = c.entry(base.to_string()).or_insert(0);
        let name = if *n == 0 {
            base.to_string()
        } else {
            format!("{base}_{n}")
        };
        *n += 1;
        name
    })
}

/// Gives back a default name that was just issued and is being replaced by an explicit one, so
/// `Dense::new(4).named("head")` leaves the counters as Keras's `Dense(4, name="head")` does. Only
/// the most recent name of its base can be given back; an older one stays used.
pub fn release(base: &str, name: &str) {
    COUNTERS.with(|c| {
        let mut c = c.borrow_mut();
        if let Some(n) = c.get_mut(base).filter(|n| **n > 0) {
            let last = if *n == 1 {
                base.to_string()
            } else {
                format!("{base}_{}", *n - 1)
            };
            if last == name {
                *n -= 1;
            }
        }
    })
}

/// Resets all name counters of this thread.
pub fn clear_session() {
    COUNTERS.with(|c| c.borrow_mut().clear());
}

/// Runs `f` with fresh counters and restores the previous ones afterwards, so that a built-in
/// architecture gets Keras's canonical names (`conv2d_80`) however many layers exist already.
pub fn with_fresh_names<T>(f: impl FnOnce() -> T) -> T {
    let saved = COUNTERS.with(|c| std::mem::take(&mut *c.borrow_mut()));
    let out = f();
    COUNTERS.with(|c| *c.borrow_mut() = saved);
    out
}

/// `"BatchNormalization"` -> `"batch_normalization"`, `"Conv2D"` -> `"conv2d"`: Keras's two
/// rules, an underscore before a capitalised word and between a lowercase and an uppercase letter.
pub fn snake_case(class: &str) -> String {
    let c: Vec<char> = class
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    let mut pass1 = String::new();
    for (i, &ch) in c.iter().enumerate() {
        let word_start =
            ch.is_ascii_uppercase() && c.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
        if i > 0 && word_start {
            pass1.push('_');
        }
        pass1.push(ch);
    }
    let p: Vec<char> = pass1.chars().collect();
    let mut out = String::new();
    for (i, &ch) in p.iter().enumerate() {
        if i > 0 && ch.is_ascii_uppercase() && p[i - 1].is_ascii_lowercase() {
            out.push('_');
        }
        out.extend(ch.to_lowercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake_case_matches_keras_names() {
        for (c, s) in [
            ("Dense", "dense"),
            ("BatchNormalization", "batch_normalization"),
            ("Conv2D", "conv2d"),
            ("MaxPooling2D", "max_pooling2d"),
            ("GlobalAveragePooling2D", "global_average_pooling2d"),
            ("InputLayer", "input_layer"),
            ("ReLU", "re_lu"),
            ("DepthwiseConv2D", "depthwise_conv2d"),
            ("ZeroPadding2D", "zero_padding2d"),
        ] {
            assert_eq!(snake_case(c), s);
        }
    }

    #[test]
    fn counters_are_per_base_name() {
        clear_session();
        assert_eq!(unique_name("dense"), "dense");
        assert_eq!(unique_name("dense"), "dense_1");
        assert_eq!(unique_name("conv2d"), "conv2d");
        with_fresh_names(|| assert_eq!(unique_name("dense"), "dense"));
        assert_eq!(unique_name("dense"), "dense_2");
        release("dense", "dense_2");
        assert_eq!(unique_name("dense"), "dense_2");
        release("dense", "dense_1"); // not the latest: stays used
        assert_eq!(unique_name("dense"), "dense_3");
    }
}
