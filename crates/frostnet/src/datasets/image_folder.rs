//! `image_dataset_from_directory`: a folder of images as a stream of batches, with Keras's
//! option names and semantics (`keras/src/utils/image_dataset_utils.py` and `dataset_utils.py`).
//!
//! What matches Keras: the class names (sub-folders, sorted by code point, hidden ones skipped),
//! the file order (folders walked and sorted as `os.walk` + `sorted`), the shuffle of the file list
//! (NumPy's `RandomState(seed).shuffle`, bit for bit) and therefore the validation split, the
//! decoded pixels (PNG exactly, including libpng's RGB-to-grey weights), the resize
//! (`tf.image.resize`, see `resize.rs`) and the label encodings. What differs: Keras also passes
//! the training subset through `tf.data`'s shuffle buffer each epoch (Philox-seeded, not
//! reproduced); frostnet permutes the whole subset per epoch with its own seeded generator.
//! Decoders differ for JPEG (`image`'s vs libjpeg-turbo's IDCT: a few grey levels); TensorFlow
//! refuses grayscale BMP/GIF and 4-channel JPEG/GIF, frostnet converts them.
//!
//! Decoding runs on worker threads. Worker `w` of `N` makes batches `w, w + N, ...` and hands
//! each over a channel holding at most `prefetch` batches, and the consumer reads the channels
//! round-robin: batches arrive in order, and at most `N * (prefetch + 1)` batches exist besides
//! the one being trained on, whatever the size of the folder.

use super::numpy_shuffle;
use super::resize::{crop_box, resize_into, Image8, Interpolation};
use super::{Batch, Batches, Dataset};
use crate::error::{Error, Result};
use crate::tensor::{random, Tensor};
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;

/// The extensions Keras reads (compared case-insensitively); other files are skipped.
pub const ALLOWLIST_FORMATS: [&str; 5] = [".bmp", ".gif", ".jpeg", ".jpg", ".png"];

/// Where labels come from (Keras's `labels`).
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Labels {
    /// One class per sub-folder (`"inferred"`).
    #[default]
    Inferred,
    /// No labels: every image under the folder, recursively (`None`).
    None,
    /// One integer label per image file, in the order of the sorted file paths.
    List(Vec<usize>),
}

/// How labels are encoded (Keras's `label_mode`; `None` in the options means no labels).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LabelMode {
    /// Class indices, shape `(batch,)` (for sparse categorical cross-entropy).
    Int,
    /// One-hot, shape `(batch, classes)`.
    Categorical,
    /// 0 or 1, shape `(batch, 1)`; exactly two classes.
    Binary,
}

/// Channels of the decoded images (Keras's `color_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ColorMode {
    Grayscale,
    #[default]
    Rgb,
    Rgba,
}

impl ColorMode {
    pub fn channels(self) -> usize {
        match self {
            ColorMode::Grayscale => 1,
            ColorMode::Rgb => 3,
            ColorMode::Rgba => 4,
        }
    }
}

/// Which part of a `validation_split` to return (Keras's `subset`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subset {
    Training,
    Validation,
    /// Both, as `(training, validation)`: use [`image_datasets_from_directory`].
    Both,
}

/// `image_dataset_from_directory`'s arguments, with Keras's names and defaults, plus frostnet's
/// threading knobs.
#[derive(Clone, Debug)]
pub struct ImageDatasetOptions {
    pub labels: Labels,
    /// `Some(Int)` by default; `None` yields images only.
    pub label_mode: Option<LabelMode>,
    /// The classes to use and their order; must be sub-folder names. Default: every sub-folder,
    /// sorted.
    pub class_names: Option<Vec<String>>,
    pub color_mode: ColorMode,
    pub batch_size: usize,
    /// `(height, width)` every image is resized to.
    pub image_size: (usize, usize),
    /// Shuffle the file list (seeded as Keras does) and the training order each epoch.
    pub shuffle: bool,
    pub seed: Option<u64>,
    pub validation_split: Option<f32>,
    pub subset: Option<Subset>,
    pub interpolation: Interpolation,
    /// Descend into symbolic links to folders.
    pub follow_links: bool,
    /// Resize without distortion by cropping the largest centred window of the target ratio.
    pub crop_to_aspect_ratio: bool,
    /// Print "Found N files belonging to K classes." as Keras does.
    pub verbose: bool,
    /// Decoding threads; 0 means one per core, at most 4.
    pub num_workers: usize,
    /// Finished batches each worker may hold ahead of training.
    pub prefetch: usize,
}

impl Default for ImageDatasetOptions {
    fn default() -> Self {
        ImageDatasetOptions {
            labels: Labels::Inferred,
            label_mode: Some(LabelMode::Int),
            class_names: None,
            color_mode: ColorMode::Rgb,
            batch_size: 32,
            image_size: (256, 256),
            shuffle: true,
            seed: None,
            validation_split: None,
            subset: None,
            interpolation: Interpolation::Bilinear,
            follow_links: false,
            crop_to_aspect_ratio: false,
            verbose: true,
            num_workers: 0,
            prefetch: 2,
        }
    }
}

/// What every image goes through, shared by the workers.
#[derive(Debug)]
struct Pipeline {
    image_size: (usize, usize),
    color_mode: ColorMode,
    interpolation: Interpolation,
    crop_to_aspect_ratio: bool,
    label_mode: Option<LabelMode>,
    num_classes: usize,
}

/// A folder of images as batches of `(images, labels)`: images `(batch, height, width,
/// channels)` as f32 in 0..255 (not rescaled, as Keras yields them), labels per
/// [`LabelMode`]. Implements [`Dataset`], so `fit`, `evaluate` and `predict` take it. A clone
/// shares the file list and continues the same shuffle sequence.
#[derive(Clone)]
pub struct ImageDataset {
    file_paths: Arc<Vec<PathBuf>>,
    labels: Option<Arc<Vec<usize>>>,
    class_names: Option<Vec<String>>,
    pipeline: Arc<Pipeline>,
    batch_size: usize,
    shuffle: bool,
    rng: rand::rngs::SmallRng,
    num_workers: usize,
    prefetch: usize,
}

impl std::fmt::Debug for ImageDataset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageDataset")
            .field("files", &self.file_paths.len())
            .field("class_names", &self.class_names)
            .field("batch_size", &self.batch_size)
            .finish()
    }
}

impl ImageDataset {
    /// The class names, in label order (`dataset.class_names`); `None` without labels.
    pub fn class_names(&self) -> Option<&[String]> {
        self.class_names.as_deref()
    }
    /// The image files, in the order of the (Keras-shuffled) file list (`dataset.file_paths`).
    pub fn file_paths(&self) -> &[PathBuf] {
        &self.file_paths
    }
    /// The integer label of each file of [`file_paths`](Self::file_paths).
    pub fn labels(&self) -> Option<&[usize]> {
        self.labels.as_deref().map(Vec::as_slice)
    }
    /// Number of images.
    pub fn num_samples(&self) -> usize {
        self.file_paths.len()
    }
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }
    /// Channels of the images (1, 3 or 4).
    pub fn channels(&self) -> usize {
        self.pipeline.color_mode.channels()
    }
    /// `(height, width)` of the images.
    pub fn image_size(&self) -> (usize, usize) {
        self.pipeline.image_size
    }
    /// Turns the per-epoch shuffle off, e.g. to predict in file order.
    pub fn unshuffled(mut self) -> ImageDataset {
        self.shuffle = false;
        self
    }
}

/// Loads one image, resized, as f32 HWC (what Keras's `_load_image_tf` returns).
fn load_image_with(path: &Path, p: &Pipeline) -> Result<Vec<f32>> {
    let bad = |m: String| Error::File {
        path: path.display().to_string(),
        message: m,
    };
    let io = |e: std::io::Error| Error::Io {
        path: path.display().to_string(),
        source: e,
    };
    let mut file = std::io::BufReader::new(std::fs::File::open(path).map_err(io)?);
    if let Some(len) = bad_png_palette(&mut file).map_err(io)? {
        return Err(bad(format!(
            "cannot decode image: its PNG palette (PLTE chunk) is {len} bytes, not whole \
             3-byte RGB entries"
        )));
    }
    file.rewind().map_err(io)?;
    let reader = image::ImageReader::new(file)
        .with_guessed_format()
        .map_err(io)?;
    if reader.format().is_none() {
        return Err(bad(
            "not a BMP, GIF, JPEG or PNG image (unrecognised content)".into(),
        ));
    }
    let img = reader
        .decode()
        .map_err(|e| bad(format!("cannot decode image: {e}")))?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    let c = p.color_mode.channels();
    let is_gray = matches!(
        img.color(),
        image::ColorType::L8
            | image::ColorType::La8
            | image::ColorType::L16
            | image::ColorType::La16
    );
    let pixels: Vec<u8> = match p.color_mode {
        ColorMode::Rgb => img.into_rgb8().into_raw(),
        ColorMode::Rgba => img.into_rgba8().into_raw(),
        ColorMode::Grayscale if is_gray => img.into_luma8().into_raw(),
        ColorMode::Grayscale => {
            // libpng's `png_set_rgb_to_gray(1, 0.299, 0.587)` as TensorFlow calls it: weights
            // 9797/19234/3737 over 2^15, truncated.
            img.into_rgb8()
                .chunks_exact(3)
                .map(|px| {
                    let (r, g, b) = (px[0] as u32, px[1] as u32, px[2] as u32);
                    ((9797 * r + 19234 * g + 3737 * b) >> 15) as u8
                })
                .collect()
        }
    };
    let src = Image8 {
        data: &pixels,
        height: h,
        width: w,
        channels: c,
    };
    let (oh, ow) = p.image_size;
    let window = if p.crop_to_aspect_ratio {
        crop_box(h, w, (oh, ow))
    } else {
        (0, 0, h, w)
    };
    let mut out = vec![0.0f32; oh * ow * c];
    resize_into(&src, window, oh, ow, p.interpolation, &mut out);
    Ok(out)
}

/// The length of a PLTE chunk that is not a whole number of RGB entries, if `file` is a PNG
/// with one (read from the start, chunk headers only: every other chunk is skipped by seeking).
/// Why: `png` 0.18.1, the newest release, panics on such a palette instead of reporting it
/// (image-rs/image-png#694; the fix is merged upstream, not yet released), and a folder of
/// images may hold any file. A file that is not a PNG, or ends early, is left to the decoder.
fn bad_png_palette(file: &mut (impl Read + Seek)) -> std::io::Result<Option<u32>> {
    let mut signature = [0u8; 8];
    if file.read_exact(&mut signature).is_err() || signature != *b"\x89PNG\r\n\x1a\n" {
        return Ok(None);
    }
    let mut head = [0u8; 8];
    while file.read_exact(&mut head).is_ok() {
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        match &head[4..] {
            b"PLTE" if len % 3 != 0 => return Ok(Some(len)),
            b"IEND" => break,
            // The chunk's data and CRC.
            _ => file.seek_relative(i64::from(len) + 4)?,
        }
    }
    Ok(None)
}

/// One image file as a `(1, height, width, channels)` tensor in 0..255, decoded and resized exactly
/// as [`image_dataset_from_directory`] does (Keras's `load_img` + `img_to_array`, resized with
/// `tf.image.resize`).
pub fn load_image(
    path: impl AsRef<Path>,
    image_size: (usize, usize),
    color_mode: ColorMode,
    interpolation: Interpolation,
) -> Result<Tensor> {
    let p = Pipeline {
        image_size,
        color_mode,
        interpolation,
        crop_to_aspect_ratio: false,
        label_mode: None,
        num_classes: 0,
    };
    let (h, w) = image_size;
    if h == 0 || w == 0 {
        return Err(Error::InvalidConfig(format!(
            "image_size must be positive, got {image_size:?}"
        )));
    }
    Tensor::from_vec(
        &[1, h, w, color_mode.channels()],
        load_image_with(path.as_ref(), &p)?,
    )
}

/// Decodes the files `rows` into one batch.
fn make_batch(
    rows: &[usize],
    files: &[PathBuf],
    labels: Option<&[usize]>,
    p: &Pipeline,
) -> Result<Batch> {
    let (oh, ow) = p.image_size;
    let c = p.color_mode.channels();
    let mut xs = Vec::with_capacity(rows.len() * oh * ow * c);
    for &r in rows {
        xs.extend(load_image_with(&files[r], p)?);
    }
    let x = Tensor::from_vec(&[rows.len(), oh, ow, c], xs)?;
    let y = match (p.label_mode, labels) {
        (Some(mode), Some(labels)) => Some(match mode {
            LabelMode::Int => Tensor::from_vec(
                &[rows.len()],
                rows.iter().map(|&r| labels[r] as f32).collect(),
            )?,
            LabelMode::Binary => Tensor::from_vec(
                &[rows.len(), 1],
                rows.iter().map(|&r| labels[r] as f32).collect(),
            )?,
            LabelMode::Categorical => {
                let k = p.num_classes;
                let mut v = vec![0.0; rows.len() * k];
                for (i, &r) in rows.iter().enumerate() {
                    if labels[r] < k {
                        v[i * k + labels[r]] = 1.0;
                    }
                }
                Tensor::from_vec(&[rows.len(), k], v)?
            }
        }),
        _ => None,
    };
    Ok(Batch { x, y })
}

/// One pass: the consumer side of the workers' channels.
struct Stream {
    receivers: Vec<Receiver<Result<Batch>>>,
    next: usize,
    total: usize,
    failed: bool,
}

impl Iterator for Stream {
    type Item = Result<Batch>;
    fn next(&mut self) -> Option<Result<Batch>> {
        if self.failed || self.next >= self.total {
            return None;
        }
        let rx = &self.receivers[self.next % self.receivers.len()];
        self.next += 1;
        match rx.recv() {
            Ok(Ok(b)) => Some(Ok(b)),
            Ok(Err(e)) => {
                self.failed = true;
                Some(Err(e))
            }
            Err(_) => {
                self.failed = true;
                Some(Err(Error::State(
                    "an image decoding worker stopped unexpectedly".into(),
                )))
            }
        }
    }
}

impl Dataset for ImageDataset {
    fn num_batches(&self) -> Option<usize> {
        Some(self.file_paths.len().div_ceil(self.batch_size))
    }

    fn epoch(&mut self) -> Result<Batches<'_>> {
        let n = self.file_paths.len();
        let order: Vec<usize> = if self.shuffle {
            random::permutation(&mut self.rng, n)
        } else {
            (0..n).collect()
        };
        let batches: Arc<Vec<Vec<usize>>> = Arc::new(
            order
                .chunks(self.batch_size)
                .map(<[usize]>::to_vec)
                .collect(),
        );
        let total = batches.len();
        let workers = self.num_workers.clamp(1, total.max(1));
        let mut receivers = Vec::with_capacity(workers);
        for w in 0..workers {
            let (tx, rx) = sync_channel(self.prefetch);
            let (batches, files, labels, p) = (
                batches.clone(),
                self.file_paths.clone(),
                self.labels.clone(),
                self.pipeline.clone(),
            );
            std::thread::Builder::new()
                .name(format!("frostnet-images-{w}"))
                .spawn(move || {
                    for rows in batches.iter().skip(w).step_by(workers) {
                        let b = make_batch(rows, &files, labels.as_deref().map(Vec::as_slice), &p);
                        let failed = b.is_err();
                        // A closed channel means the pass was dropped: stop quietly.
                        if tx.send(b).is_err() || failed {
                            return;
                        }
                    }
                })
                .map_err(|e| Error::State(format!("cannot start an image decoding thread: {e}")))?;
            receivers.push(rx);
        }
        Ok(Box::new(Stream {
            receivers,
            next: 0,
            total,
            failed: false,
        }))
    }
}

/// Python's `os.walk(top)` sorted by root, each root's files sorted: the files (relative to
/// `top`, `/`-separated) whose lower-cased names end in an allowed extension.
fn iter_valid_files(top: &Path, follow_links: bool) -> Result<Vec<String>> {
    let io = |p: &Path, e: std::io::Error| Error::Io {
        path: p.display().to_string(),
        source: e,
    };
    // (root as os.walk spells it, relative prefix, sorted file names)
    let mut roots: Vec<(String, String, Vec<String>)> = Vec::new();
    let mut stack = vec![(top.to_path_buf(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(|e| io(&dir, e))? {
            let entry = entry.map_err(|e| io(&dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            let is_link = entry.file_type().map_err(|e| io(&path, e))?.is_symlink();
            // os.walk's `is_dir()` follows links; it descends into linked folders only when asked.
            if std::fs::metadata(&path)
                .map(|m| m.is_dir())
                .unwrap_or(false)
            {
                if !is_link || follow_links {
                    let sub = if rel.is_empty() {
                        name.clone()
                    } else {
                        format!("{rel}/{name}")
                    };
                    stack.push((path, sub));
                }
            } else {
                files.push(name);
            }
        }
        files.sort();
        let key = dir.to_string_lossy().into_owned();
        roots.push((key, rel, files));
    }
    roots.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = Vec::new();
    for (_, rel, files) in roots {
        for f in files {
            let lower = f.to_lowercase();
            if ALLOWLIST_FORMATS.iter().any(|ext| lower.ends_with(ext)) {
                out.push(if rel.is_empty() {
                    f
                } else {
                    format!("{rel}/{f}")
                });
            }
        }
    }
    Ok(out)
}

/// Keras's `index_directory`: the relative file paths, their labels and the class names, the
/// file list shuffled with NumPy's generator when asked.
type Index = (Vec<String>, Option<Vec<usize>>, Option<Vec<String>>);

fn index_directory(
    dir: &Path,
    opts: &ImageDatasetOptions,
    seed: u32,
    labels_off: bool,
) -> Result<Index> {
    let inferred = !labels_off && opts.labels == Labels::Inferred;
    let subdirs: Vec<String> = if inferred {
        let mut subdirs = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| Error::Io {
            path: dir.display().to_string(),
            source: e,
        })? {
            let entry = entry.map_err(|e| Error::Io {
                path: dir.display().to_string(),
                source: e,
            })?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.path().is_dir() && !name.starts_with('.') {
                subdirs.push(name);
            }
        }
        subdirs.sort();
        if let Some(names) = &opts.class_names {
            if let Some(bad) = names.iter().find(|n| !subdirs.contains(n)) {
                return Err(Error::InvalidConfig(format!(
                    "class_names {names:?} do not match the sub-folders of {}: expected {subdirs:?} \
                     (or a subset of it), but '{bad}' is not one",
                    dir.display()
                )));
            }
            names.clone()
        } else {
            subdirs
        }
    } else {
        if opts.class_names.is_some() {
            return Err(Error::InvalidConfig(
                "class_names can only be given with labels inferred from the sub-folders".into(),
            ));
        }
        vec![String::new()]
    };
    let mut files = Vec::new();
    let mut labels = Vec::new();
    for (i, sub) in subdirs.iter().enumerate() {
        let top = if sub.is_empty() {
            dir.to_path_buf()
        } else {
            dir.join(sub)
        };
        for f in iter_valid_files(&top, opts.follow_links)? {
            files.push(if sub.is_empty() {
                f
            } else {
                format!("{sub}/{f}")
            });
            labels.push(i);
        }
    }
    let (mut labels, class_names) = match (&opts.labels, labels_off) {
        (_, true) | (Labels::None, _) => (None, None),
        (Labels::Inferred, _) => (Some(labels), Some(subdirs)),
        (Labels::List(given), _) => {
            if given.len() != files.len() {
                return Err(Error::InvalidConfig(format!(
                    "{} labels given but {} image files found in {}",
                    given.len(),
                    files.len(),
                    dir.display()
                )));
            }
            let mut names: Vec<usize> = given.clone();
            names.sort_unstable();
            names.dedup();
            (
                Some(given.clone()),
                Some(names.iter().map(|l| l.to_string()).collect()),
            )
        }
    };
    if opts.verbose {
        match &class_names {
            Some(c) => println!(
                "Found {} files belonging to {} classes.",
                files.len(),
                c.len()
            ),
            None => println!("Found {} files.", files.len()),
        }
    }
    if opts.shuffle {
        numpy_shuffle::shuffle(&mut files, seed);
        if let Some(l) = labels.as_mut() {
            numpy_shuffle::shuffle(l, seed);
        }
    }
    Ok((files, labels, class_names))
}

/// The file list split as Keras's `get_training_or_validation_split`: the last
/// `int(split * n)` files are the validation subset.
fn split(n: usize, validation_split: f32, subset: Subset) -> Result<std::ops::Range<usize>> {
    let num_val = (validation_split as f64 * n as f64) as usize;
    if num_val == 0 {
        return Err(Error::Data(format!(
            "validation_split {validation_split} of {n} files leaves no validation files"
        )));
    }
    Ok(match subset {
        Subset::Training => 0..n - num_val,
        _ => n - num_val..n,
    })
}

fn check_options(opts: &ImageDatasetOptions) -> Result<()> {
    if opts.batch_size == 0 {
        return Err(Error::InvalidConfig("batch_size must be at least 1".into()));
    }
    if opts.image_size.0 == 0 || opts.image_size.1 == 0 {
        return Err(Error::InvalidConfig(format!(
            "image_size must be positive, got {:?}",
            opts.image_size
        )));
    }
    let (h, w) = opts.image_size;
    let per_batch = (opts.batch_size as u128) * (h as u128) * (w as u128) * 4 * 4;
    if per_batch > (1u128 << 34) {
        return Err(Error::InvalidConfig(format!(
            "a batch of {} images of {h}x{w} would take {} GiB",
            opts.batch_size,
            per_batch >> 30
        )));
    }
    if let Some(s) = opts.validation_split {
        if !(s > 0.0 && s < 1.0) {
            return Err(Error::InvalidConfig(format!(
                "validation_split must be between 0 and 1, received: {s}"
            )));
        }
    }
    if opts.validation_split.is_some() != opts.subset.is_some() {
        return Err(Error::InvalidConfig(
            "If `subset` is set, `validation_split` must be set, and inversely.".into(),
        ));
    }
    if opts.validation_split.is_some() && opts.shuffle && opts.seed.is_none() {
        return Err(Error::InvalidConfig(
            "If using `validation_split` and shuffling the data, you must provide a `seed` \
             argument, to make sure that there is no overlap between the training and \
             validation subset."
                .into(),
        ));
    }
    if let Some(seed) = opts.seed {
        if seed > u32::MAX as u64 {
            return Err(Error::InvalidConfig(format!(
                "seed must be between 0 and 2**32 - 1 (NumPy's RandomState), got {seed}"
            )));
        }
    }
    Ok(())
}

/// Builds the datasets: one per requested subset.
fn build(dir: &Path, opts: &ImageDatasetOptions) -> Result<Vec<ImageDataset>> {
    check_options(opts)?;
    let labels_off = opts.label_mode.is_none() || opts.labels == Labels::None;
    // Keras draws a seed when none is given: `np.random.randint(1e6)`.
    let seed = opts
        .seed
        .unwrap_or_else(|| rand::Rng::random_range(&mut random::rng(None), 0..1_000_000));
    let (files, labels, class_names) = index_directory(dir, opts, seed as u32, labels_off)?;
    let label_mode = if labels_off { None } else { opts.label_mode };
    let num_classes = class_names.as_ref().map_or(0, Vec::len);
    if label_mode == Some(LabelMode::Binary) && num_classes != 2 {
        return Err(Error::InvalidConfig(format!(
            "label_mode binary needs exactly 2 classes, found {num_classes}: {:?}",
            class_names.unwrap_or_default()
        )));
    }
    let pipeline = Arc::new(Pipeline {
        image_size: opts.image_size,
        color_mode: opts.color_mode,
        interpolation: opts.interpolation,
        crop_to_aspect_ratio: opts.crop_to_aspect_ratio,
        label_mode,
        num_classes,
    });
    let workers = if opts.num_workers == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
    } else {
        opts.num_workers
    };
    let n = files.len();
    let parts: Vec<(std::ops::Range<usize>, bool)> = match (opts.validation_split, opts.subset) {
        (Some(s), Some(Subset::Both)) => vec![
            (split(n, s, Subset::Training)?, opts.shuffle),
            (split(n, s, Subset::Validation)?, false),
        ],
        (Some(s), Some(sub)) => vec![(split(n, s, sub)?, opts.shuffle)],
        _ => vec![(0..n, opts.shuffle)],
    };
    let mut out = Vec::new();
    for (i, (range, shuffle)) in parts.into_iter().enumerate() {
        if range.is_empty() {
            return Err(Error::Data(format!(
                "no images found in directory {} (allowed formats: {})",
                dir.display(),
                ALLOWLIST_FORMATS.join(", ")
            )));
        }
        out.push(ImageDataset {
            file_paths: Arc::new(files[range.clone()].iter().map(|f| dir.join(f)).collect()),
            labels: labels.as_ref().map(|l| Arc::new(l[range.clone()].to_vec())),
            class_names: class_names.clone(),
            pipeline: pipeline.clone(),
            batch_size: opts.batch_size,
            shuffle,
            rng: random::rng(Some(seed.wrapping_add(i as u64))),
            num_workers: workers,
            prefetch: opts.prefetch,
        });
    }
    Ok(out)
}

/// Keras's `keras.utils.image_dataset_from_directory(directory, ...)`: the images under `dir`,
/// labelled by sub-folder, as a streaming [`Dataset`]. For `subset: Both` use
/// [`image_datasets_from_directory`].
///
/// ```no_run
/// use frostnet::datasets::{image_dataset_from_directory, ImageDatasetOptions, Subset};
/// let train = image_dataset_from_directory("photos", &ImageDatasetOptions {
///     image_size: (299, 299),
///     validation_split: Some(0.2),
///     subset: Some(Subset::Training),
///     seed: Some(1337),
///     ..Default::default()
/// })?;
/// println!("{:?}", train.class_names());
/// # Ok::<(), frostnet::Error>(())
/// ```
pub fn image_dataset_from_directory(
    dir: impl AsRef<Path>,
    opts: &ImageDatasetOptions,
) -> Result<ImageDataset> {
    if opts.subset == Some(Subset::Both) {
        return Err(Error::InvalidConfig(
            "subset Both returns two datasets: call image_datasets_from_directory".into(),
        ));
    }
    Ok(build(dir.as_ref(), opts)?.remove(0))
}

/// `image_dataset_from_directory` with `subset="both"`: `(training, validation)`, split as
/// Keras splits (the validation subset is not shuffled per epoch).
pub fn image_datasets_from_directory(
    dir: impl AsRef<Path>,
    opts: &ImageDatasetOptions,
) -> Result<(ImageDataset, ImageDataset)> {
    let mut opts = opts.clone();
    if opts.validation_split.is_none() {
        return Err(Error::InvalidConfig(
            "image_datasets_from_directory needs validation_split".into(),
        ));
    }
    opts.subset = Some(Subset::Both);
    let mut v = build(dir.as_ref(), &opts)?;
    let val = v.pop().expect("two subsets");
    let train = v.pop().expect("two subsets");
    Ok((train, val))
}
