//! Broadcasting: walk an output's elements together with the element of each input that is
//! broadcast to it. Inputs come already aligned to the output's rank: Keras's merge layers put
//! missing axes after the batch axis, numpy (Keras's op nodes) in front, and Normalization or
//! PReLU parameters have their own strides; the callers align, so the walk is one piece of code
//! for every broadcasting layer.

/// Row-major strides of `dims` (of the output's rank), 0 along the axes where a size-1 input
/// axis is broadcast to a larger output axis.
pub(crate) fn strides(dims: &[usize], out: &[usize]) -> Vec<usize> {
    debug_assert_eq!(dims.len(), out.len());
    let mut st = vec![0usize; dims.len()];
    let mut acc = 1;
    for a in (0..dims.len()).rev() {
        st[a] = if dims[a] == 1 && out[a] != 1 { 0 } else { acc };
        acc *= dims[a];
    }
    st
}

/// Calls `f(output index, offsets)` for every element of `out`, in row-major order, where
/// `offsets[i]` is the element's offset in input `i` (strides `strides[i]`, as from
/// [`strides`]). The innermost axis runs as a plain loop; only the outer axes carry an index.
pub(crate) fn visit(out: &[usize], strides: &[Vec<usize>], mut f: impl FnMut(usize, &[usize])) {
    let total: usize = out.iter().product();
    let k = strides.len();
    let mut offs = vec![0usize; k];
    if total == 0 {
        return;
    }
    let r = out.len();
    if r == 0 {
        f(0, &offs);
        return;
    }
    let last = out[r - 1];
    let inner: Vec<usize> = strides.iter().map(|s| s[r - 1]).collect();
    let mut idx = vec![0usize; r - 1];
    let mut base = vec![0usize; k];
    for o in 0..total / last {
        for j in 0..last {
            for i in 0..k {
                offs[i] = base[i] + j * inner[i];
            }
            f(o * last + j, &offs);
        }
        for ax in (0..r - 1).rev() {
            idx[ax] += 1;
            for (b, s) in base.iter_mut().zip(strides) {
                *b += s[ax];
            }
            if idx[ax] < out[ax] {
                break;
            }
            for (b, s) in base.iter_mut().zip(strides) {
                *b -= s[ax] * out[ax];
            }
            idx[ax] = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every output index and offset against the definition: the output's multi-index, with
    /// broadcast axes pinned to 0, dotted with the input's row-major strides.
    #[test]
    fn offsets_follow_the_definition() {
        let out = [2usize, 3, 1, 4];
        let ins: [[usize; 4]; 3] = [[2, 3, 1, 4], [1, 3, 1, 1], [2, 1, 1, 4]];
        let st: Vec<Vec<usize>> = ins.iter().map(|d| strides(d, &out)).collect();
        let mut seen = 0;
        visit(&out, &st, |o, offs| {
            assert_eq!(o, seen);
            let mut rem = o;
            let mut ix = [0usize; 4];
            for a in (0..4).rev() {
                ix[a] = rem % out[a];
                rem /= out[a];
            }
            for (d, &off) in ins.iter().zip(offs) {
                let mut want = 0;
                for a in 0..4 {
                    let i = if d[a] == 1 { 0 } else { ix[a] };
                    want = want * d[a] + i;
                }
                assert_eq!(off, want, "output {o} ({ix:?}) in input {d:?}");
            }
            seen += 1;
        });
        assert_eq!(seen, 24);
        // A scalar output and an empty one.
        let mut calls = 0;
        visit(&[], &[vec![]], |o, offs| {
            assert_eq!((o, offs), (0, &[0usize][..]));
            calls += 1;
        });
        visit(&[2, 0], &[vec![0, 1]], |_, _| calls += 100);
        assert_eq!(calls, 1);
    }
}
